"""The backbone: conv embedding, then a stem and a downsampling branch of pluggable temporal blocks.

One class serves ActionFormer's convTransformer (block "window_attn"), its conv backbone
("conv") and ActionMamba's mamba backbone ("vim" / "dbm"); blocks come only from `BLOCKS`.
"""

from __future__ import annotations

import logging

import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import BLOCKS
from .layers import LayerNorm, MaskedConv1D, get_sinusoid_encoding

logger = logging.getLogger(__name__)

# the reference adds the absolute PE only in its convTransformer backbone (conv / mamba ignore it)
_ABS_PE_BLOCKS = ("window_attn",)


def window_divisor(window_size: int) -> int:
    """Divisibility the reference's chunked window attention needs: (w // 2) · 2; 1 if global."""
    return (window_size // 2) * 2 if window_size > 1 else 1


class Backbone(nn.Module):
    """Embedding (arch[0] × MaskedConv1D → LayerNorm → ReLU), optional abs PE, stem, branch.

    forward(x [B, C_in, T], mask [B, 1, T]) -> (feats, masks), lists of arch[2] + 1 levels;
    level l is `[B, dim, T / scale_factor^l]`.

    `size_divisor` is the divisibility of T the backbone needs: max over levels l of
    stride_l · max(window_divisor(w_l), block.size_divisor()). It equals the reference's
    max_div_factor for every block type (the Mamba backbone pads like convTransformer).
    """

    def __init__(
        self,
        n_in: int,
        dim: int,
        embd_kernel_size: int,
        arch: tuple[int, int, int],
        scale_factor: int,
        with_ln: bool,
        block_type: str,
        block_args: dict,
        window_sizes: list[int],
        max_len: int,
        use_abs_pe: bool = False,
    ):
        super().__init__()
        if len(arch) != 3 or len(window_sizes) != arch[2] + 1:
            raise ValueError(
                f"Backbone: arch {arch} gives {arch[2] + 1} levels but {len(window_sizes)} "
                "window sizes were given"
            )
        if "window_size" in block_args:
            raise ValueError(
                "Backbone: set the window with model.n_mha_win_size, "
                "not model.block.args.window_size"
            )
        if block_type not in BLOCKS:
            raise KeyError(f"unknown block type '{block_type}'; available: {sorted(BLOCKS)}")
        self.arch, self.scale_factor, self.max_len = tuple(arch), scale_factor, max_len
        self.embd, self.embd_norm = _embedding(n_in, dim, embd_kernel_size, arch[0], with_ln)
        self.relu = nn.ReLU()

        self.use_abs_pe = use_abs_pe and block_type in _ABS_PE_BLOCKS
        if use_abs_pe and not self.use_abs_pe:
            logger.warning(
                "use_abs_pe is ignored for block type '%s' (reference behaviour)", block_type
            )
        if self.use_abs_pe:  # rescaled by 1/sqrt(C) as in the reference
            self.register_buffer(
                "pos_embd", get_sinusoid_encoding(max_len, dim) / dim**0.5, persistent=False
            )

        def block(stride: int, window: int) -> nn.Module:
            extra = {"window_size": window} if BLOCKS[block_type].takes_window else {}
            return BLOCKS.build(block_type, dim=dim, stride=stride, **block_args, **extra)

        self.stem = nn.ModuleList(block(1, window_sizes[0]) for _ in range(arch[1]))
        self.branch = nn.ModuleList(
            block(scale_factor, window_sizes[1 + i]) for i in range(arch[2])
        )
        self.size_divisor = self._size_divisor(window_sizes)
        self.apply(_zero_bias)

    def _size_divisor(self, window_sizes: list[int]) -> int:
        # the blocks whose output is level l: the stem for level 0, branch[l - 1] after that
        level_blocks = [list(self.stem)] + [[b] for b in self.branch]
        divisor = 1
        for level, (blocks, window) in enumerate(zip(level_blocks, window_sizes)):
            need = max([window_divisor(window)] + [b.size_divisor() for b in blocks])
            divisor = max(divisor, self.scale_factor**level * need)
        return divisor

    def _add_abs_pe(self, x: Tensor, mask: Tensor) -> Tensor:
        """Training uses the fixed table (T ≤ max_len); inference stretches it for longer input."""
        T = x.shape[-1]
        pe = self.pos_embd  # [1, C, max_len]
        if self.training and T > self.max_len:
            raise ValueError(
                f"Backbone: training length {T} exceeds the position table ({self.max_len})"
            )
        if not self.training and T >= self.max_len:
            pe = F.interpolate(pe, T, mode="linear", align_corners=False)  # [1, C, T]
        return x + pe[:, :, :T] * mask.to(x.dtype)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """x [B, C_in, T], mask [B, 1, T] bool -> per level feats [B, C, T_l], masks [B, 1, T_l]."""
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)  # [B, C, T]
            x = self.relu(norm(x))
        if self.use_abs_pe:
            x = self._add_abs_pe(x, mask)
        for blk in self.stem:
            x, mask = blk(x, mask)
        feats, masks = [x], [mask]
        for blk in self.branch:
            x, mask = blk(x, mask)  # [B, C, T_l]
            feats.append(x)
            masks.append(mask)
        return feats, masks


def _embedding(
    n_in: int, dim: int, kernel: int, n_layers: int, with_ln: bool
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """n_layers × (MaskedConv1D, LayerNorm or Identity); the conv has no bias before a LayerNorm."""
    convs, norms = nn.ModuleList(), nn.ModuleList()
    for idx in range(n_layers):
        in_dim = n_in if idx == 0 else dim
        convs.append(MaskedConv1D(in_dim, dim, kernel, padding=kernel // 2, bias=not with_ln))
        norms.append(LayerNorm(dim) if with_ln else nn.Identity())
    return convs, norms


def _zero_bias(module: nn.Module) -> None:
    """Reference init: Linear / Conv1d biases start at 0 unless tagged `_no_reinit` (Mamba dt)."""
    bias = getattr(module, "bias", None) if isinstance(module, (nn.Linear, nn.Conv1d)) else None
    if bias is not None and not getattr(bias, "_no_reinit", False):
        nn.init.zeros_(bias)
