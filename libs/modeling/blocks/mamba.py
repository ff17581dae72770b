"""ActionMamba's temporal block (`MaskMambaBlock` of video-mamba-suite), registered as "vim" and "dbm"."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import AffineDropPath, MaxPooler
from ..mixers import BiMambaV2, DecomposedBiMamba
from .base import BLOCKS, TemporalBlock

PADDING_MODES = ("reference", "exact")


class MaskMambaBlock(TemporalBlock):
    """Pre-LN residual bidirectional-Mamba block on masked sequences.

        y   = mixer(LayerNorm_C(x)) · mask                 # nn.LayerNorm over channels, eps 1e-5
        x   = res + AffineDropPath(y)                      # layer scale init 1e-4, drop prob `drop_path`
        x, mask = MaxPooler(x, mask)                       # only if stride == 2

    Downsampling happens AFTER the residual sum, on the block output: masked max-pool with
    kernel 3, stride 2, padding 1 on x, and mask[:, :, ::2] on the mask. So the mixer of a
    stride-2 block runs at its input resolution, and a pyramid level's features are the pooled
    output of the previous block.

    Args:
        dim: channels C (the mixer's `dim`).
        stride: 1, or 2 to downsample after the block.
        drop_path: drop-path probability of the residual branch. The reference hard-codes 0.3
            and ignores the config's `droppath`. With 0 the branch is an nn.Identity, as in the
            reference, so there is no layer scale either (and no `drop_path.scale` key).
        d_state, d_conv, expand: mixer sizes (N, conv kernel, E = expand · C).
        padding: how padded positions are treated.
            "reference": as published. The residual is not masked, so padded positions carry
                the residual stream (their output equals their input plus 0), and the backward
                scan runs through the padded tail, so the outputs at valid positions depend on
                how much padding follows (a leak that is zero at init and grows once the
                LayerNorm bias is trained). Use it for paper parity and published checkpoints,
                and pad every batch to the reference length (max_seq_len, or a multiple of the
                reference divisor for long test videos).
            "exact": the backward direction reverses only each sample's valid prefix (the mask
                must be a prefix mask), and the residual is masked, so outputs at padded
                positions are exactly zero and valid outputs do not depend on the padding
                amount. Batches may then be padded to their longest video.

    forward(x [B, C, T], mask [B, 1, T] bool) -> (x [B, C, T // stride], mask [B, 1, T // stride]).
    T must be divisible by the stride; `size_divisor()` stays 1 because the backbone's divisor
    (a multiple of every level's stride) already guarantees that.
    """

    mixer_cls: type = DecomposedBiMamba  # set by the registered subclasses
    padding_invariant_reason = "padding='reference': the backward scan starts in the padded tail (reference-spec §5.6)"

    def __init__(self, dim: int, stride: int = 1, drop_path: float = 0.3, d_state: int = 16,
                 d_conv: int = 4, expand: int = 1, padding: str = "reference"):
        super().__init__(dim, stride, drop_path)
        if padding not in PADDING_MODES:
            raise ValueError(
                f"{type(self).__name__}: padding must be one of {list(PADDING_MODES)}, got {padding!r}"
            )
        self.padding = padding
        # construction order (mixer, norm, drop path) = the reference's: same state_dict order
        self.mamba = self.mixer_cls(dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.downsample = MaxPooler(kernel_size=3, stride=2, padding=1) if stride == 2 else None
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.drop_path = AffineDropPath(dim, drop_prob=drop_path) if drop_path > 0 else nn.Identity()

    @property
    def padding_invariant(self) -> bool:
        """Whether valid outputs are independent of the amount of padding (only with "exact")."""
        return self.padding == "exact"

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"{name}: expected x [B, {self.dim}, T], got {tuple(x.shape)}")
        if mask.shape != (x.shape[0], 1, x.shape[2]):
            raise ValueError(f"{name}: mask must be [B, 1, T] = {(x.shape[0], 1, x.shape[2])}, got {tuple(mask.shape)}")
        if x.shape[2] % self.stride:
            raise ValueError(f"{name}: T={x.shape[2]} must be divisible by stride {self.stride}")
        maskf = mask.to(x.dtype)  # [B, 1, T]
        lengths = self._prefix_lengths(mask) if self.padding == "exact" else None  # [B] | None
        h = self.norm(x.transpose(1, 2))  # [B, T, C]
        y = self.mamba(h, lengths=lengths).transpose(1, 2) * maskf  # [B, C, T]
        res = x if self.padding == "reference" else x * maskf  # reference: residual NOT masked
        x = res + self.drop_path(y)  # [B, C, T]
        if self.downsample is not None:
            x, mask = self.downsample(x, mask)  # [B, C, T // 2], [B, 1, T // 2]
        return x, mask

    @staticmethod
    def _prefix_lengths(mask: Tensor) -> Tensor:
        """[B, 1, T] bool prefix mask -> [B] valid lengths; raises if a mask is not a prefix."""
        lengths = mask.sum(dim=-1).view(-1)  # [B]
        steps = torch.arange(mask.shape[-1], device=mask.device)  # [T]
        prefix = (steps[None, :] < lengths[:, None])[:, None, :]  # [B, 1, T]
        if not bool((prefix == mask.bool()).all()):
            raise ValueError("padding='exact' needs prefix masks (valid steps first, padding at the end)")
        return lengths


@BLOCKS.register("vim")
class ViMBlock(MaskMambaBlock):
    """MaskMambaBlock with the ViM mixer (bimamba v2, expand 2)."""

    mixer_cls = BiMambaV2

    def __init__(self, dim: int, stride: int = 1, drop_path: float = 0.3, d_state: int = 16,
                 d_conv: int = 4, expand: int = 2, padding: str = "reference"):
        super().__init__(dim, stride, drop_path, d_state, d_conv, expand, padding)


@BLOCKS.register("dbm")
class DBMBlock(MaskMambaBlock):
    """MaskMambaBlock with the DBM mixer (decomposed bidirectional Mamba, expand 1)."""

    mixer_cls = DecomposedBiMamba

    def __init__(self, dim: int, stride: int = 1, drop_path: float = 0.3, d_state: int = 16,
                 d_conv: int = 4, expand: int = 1, padding: str = "reference"):
        super().__init__(dim, stride, drop_path, d_state, d_conv, expand, padding)
