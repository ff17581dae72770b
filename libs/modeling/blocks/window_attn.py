"""ActionFormer's TransformerBlock with local (window) or global masked conv-attention.

The local attention computes exactly what ActionFormer's Longformer-style `LocalMaskedMHCA`
computes (each query attends the keys with |i − j| ≤ w // 2, padded keys are masked, padded
query rows are zero), with a simpler banded scheme: queries are cut into chunks of 2h
(h = w // 2) and each chunk attends its 2h + 2h keys with one dense matmul. Memory is O(T·w)
for the scores and 2× the key/value size for the overlapping key windows; T need not be a
multiple of the window (the reference needs T % 2h == 0; `size_divisor` keeps that padding
for parity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import AffineDropPath, LayerNorm, MaskedConv1D
from .base import BLOCKS, TemporalBlock


class MaskedMHCA(nn.Module):
    """Global multi-head conv-attention (ActionFormer's MaskedMHCA).

    q, k, v each come from a depthwise MaskedConv1D (kernel 3, the block's stride, no bias) and
    a channel LayerNorm, then a 1×1 projection. Padded keys are excluded; outputs at padded
    queries are zero. Submodule names follow the published checkpoints.
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        stride: int = 1,
        attn_pdrop: float = 0.0,
        proj_pdrop: float = 0.0,
    ):
        super().__init__()
        if dim % n_head != 0:
            raise ValueError(f"attention: dim {dim} is not divisible by n_head {n_head}")
        self.dim, self.n_head, self.n_channels = dim, n_head, dim // n_head
        self.scale = 1.0 / math.sqrt(self.n_channels)
        kernel = stride + 1 if stride > 1 else 3  # the reference aligns strided outputs this way
        for name in ("query", "key", "value"):  # registration order = checkpoint key order
            conv = MaskedConv1D(
                dim, dim, kernel, stride, padding=kernel // 2, groups=dim, bias=False
            )
            self.add_module(f"{name}_conv", conv)
            self.add_module(f"{name}_norm", LayerNorm(dim))
        self.key = nn.Conv1d(dim, dim, 1)
        self.query = nn.Conv1d(dim, dim, 1)
        self.value = nn.Conv1d(dim, dim, 1)
        self.attn_drop = nn.Dropout(attn_pdrop)
        self.proj_drop = nn.Dropout(proj_pdrop)
        self.proj = nn.Conv1d(dim, dim, 1)

    def _heads(self, x: Tensor) -> Tensor:
        """[B, C, T] -> [B, nh, T, hs]."""
        B, _, T = x.shape
        return x.view(B, self.n_head, self.n_channels, T).transpose(2, 3)

    def _qkv(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x [B, C, T] -> q, k, v [B, nh, T', hs] and the output mask [B, 1, T'].

        q and k / v share the stride, so one mask serves queries and keys.
        """
        q, out_mask = self.query_conv(x, mask)  # [B, C, T']
        k, _ = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q = self.query(self.query_norm(q))
        k = self.key(self.key_norm(k))
        v = self.value(self.value_norm(v))
        return self._heads(q), self._heads(k), self._heads(v), out_mask

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Full attention over valid keys. q, k, v [B, nh, T, hs], mask [B, 1, T] -> like q."""
        att = (q * self.scale) @ k.transpose(-2, -1)  # [B, nh, T, T]
        att = att.masked_fill(~mask[:, :, None, :], float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        return att @ (v * mask[:, :, :, None].to(v.dtype))  # [B, nh, T, hs]

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, T], mask [B, 1, T] -> ([B, C, T'], [B, 1, T'])."""
        q, k, v, out_mask = self._qkv(x, mask)
        out = self._attend(q, k, v, out_mask)  # [B, nh, T', hs]
        B, _, T, _ = out.shape
        out = out.transpose(2, 3).reshape(B, self.dim, T)  # [B, C, T']
        out = self.proj_drop(self.proj(out)) * out_mask.to(out.dtype)
        return out, out_mask


class LocalMaskedMHCA(MaskedMHCA):
    """Window conv-attention (ActionFormer's LocalMaskedMHCA): query i sees keys |i − j| ≤ w//2.

    With `use_rel_pe`, a learned bias `rel_pe` [1, 1, n_head, w] is added to the logits; its
    last index j stands for the key offset j − w // 2 (the reference layout).
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        window_size: int,
        stride: int = 1,
        attn_pdrop: float = 0.0,
        proj_pdrop: float = 0.0,
        use_rel_pe: bool = False,
    ):
        super().__init__(dim, n_head, stride, attn_pdrop, proj_pdrop)
        if window_size <= 1:
            raise ValueError(f"LocalMaskedMHCA needs window_size > 1, got {window_size}")
        if use_rel_pe and window_size % 2 != 1:
            raise ValueError(f"use_rel_pe needs an odd window_size, got {window_size}")
        self.window_size, self.window_overlap = window_size, window_size // 2
        self.use_rel_pe = use_rel_pe
        if use_rel_pe:
            self.rel_pe = nn.Parameter(torch.zeros(1, 1, n_head, window_size))
            nn.init.trunc_normal_(self.rel_pe, std=(2.0 / dim) ** 0.5)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Banded attention. q, k, v [B, nh, T, hs], mask [B, 1, T] -> [B, nh, T, hs]."""
        B, nh, T, hs = q.shape
        h = self.window_overlap
        # 2h queries per chunk see 4h keys: the dense scores are ≈ 2× the band, every matmul dense
        c = 2 * h
        n = -(-T // c)
        pad_q, pad_k = n * c - T, (h, n * c - T + h)
        q = F.pad(q * self.scale, (0, 0, 0, pad_q)).view(B, nh, n, c, hs)  # [B, nh, n, c, hs]
        k = F.pad(k, (0, 0) + pad_k).unfold(2, c + 2 * h, c)  # [B, nh, n, hs, c + 2h]
        v = F.pad(v, (0, 0) + pad_k).unfold(2, c + 2 * h, c)  # [B, nh, n, hs, c + 2h]
        att = q @ k  # [B, nh, n, c, c + 2h]; key j of chunk m is position m·c + j − h

        idx = torch.arange(c + 2 * h, device=q.device)
        offset = idx[None, :] - idx[:c, None]  # [c, c + 2h]: (key − query position) + h
        band = (offset >= 0) & (offset <= 2 * h)  # |key − query| ≤ h; offset is the rel_pe index
        if self.use_rel_pe:
            rel = self.rel_pe[0, 0][:, offset.clamp(0, 2 * h)]  # [nh, c, c + 2h]
            att = att + rel[None, :, None]
        key_ok = F.pad(mask[:, 0], pad_k, value=False).unfold(1, c + 2 * h, c)  # [B, n, c + 2h]
        allowed = band & key_ok[:, None, :, None, :]  # [B, 1, n, c, c + 2h]
        # a finite fill keeps rows without any allowed key (padded queries) NaN-free; every valid
        # query sees itself, so exp(min − max) = 0 exactly there, as with the reference's −inf and
        # −1e4 fills
        att = att.masked_fill(~allowed, torch.finfo(att.dtype).min)
        att = F.softmax(att, dim=-1)
        query_ok = F.pad(mask[:, 0], (0, pad_q), value=False).view(B, 1, n, c, 1)
        att = self.attn_drop(att.masked_fill(~query_ok, 0.0))
        out = att @ v.transpose(-2, -1)  # [B, nh, n, c, hs]
        return out.reshape(B, nh, n * c, hs)[:, :, :T]  # [B, nh, T, hs]


@BLOCKS.register("window_attn")
class TransformerBlock(TemporalBlock):
    """ActionFormer's pre-LN TransformerBlock (the "convTransformer" backbone block).

        out, m' = attn(LN1(x), mask)                    # strided q/k/v convs downsample here
        out = pool_skip(x) · m' + drop_path_attn(out)   # pool_skip: MaxPool1d(s+1, s, (s+1) // 2)
        out = out + drop_path_mlp(MLP(LN2(out)) · m')

    Downsampling happens inside the attention (strided depthwise convs) and on the skip path
    (max-pool), as in the reference. Attention is local when `window_size` > 1, else global.
    Outputs at padded positions are zero.
    """

    takes_window = True

    def __init__(
        self,
        dim: int,
        stride: int = 1,
        drop_path: float = 0.0,
        *,
        window_size: int,
        n_head: int = 4,
        proj_pdrop: float = 0.0,
        attn_pdrop: float = 0.0,
        use_rel_pe: bool = False,
    ):
        super().__init__(dim, stride, drop_path)
        self.window_size = window_size
        self.ln1, self.ln2 = LayerNorm(dim), LayerNorm(dim)
        if window_size > 1:
            self.attn = LocalMaskedMHCA(
                dim, n_head, window_size, stride, attn_pdrop, proj_pdrop, use_rel_pe
            )
        else:  # the reference silently ignores use_rel_pe for global attention
            self.attn = MaskedMHCA(dim, n_head, stride, attn_pdrop, proj_pdrop)
        self.pool_skip = (
            nn.MaxPool1d(stride + 1, stride, (stride + 1) // 2) if stride > 1 else nn.Identity()
        )
        self.mlp = nn.Sequential(
            nn.Conv1d(dim, 4 * dim, 1),
            nn.GELU(),
            nn.Dropout(proj_pdrop),
            nn.Conv1d(4 * dim, dim, 1),
            nn.Dropout(proj_pdrop),
        )
        self.drop_path_attn, self.drop_path_mlp = (
            AffineDropPath(dim, drop_prob=drop_path) if drop_path > 0 else nn.Identity()
            for _ in range(2)
        )

    def size_divisor(self) -> int:
        """The reference chunked attention needs T (at this level) % (2 · (w // 2)) == 0."""
        return (self.window_size // 2) * 2 if self.window_size > 1 else 1

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, T], mask [B, 1, T] -> ([B, C, T // s], [B, 1, T // s])."""
        out, out_mask = self.attn(self.ln1(x), mask)  # [B, C, T // s]
        m = out_mask.to(out.dtype)
        out = self.pool_skip(x) * m + self.drop_path_attn(out)
        out = out + self.drop_path_mlp(self.mlp(self.ln2(out)) * m)
        return out, out_mask
