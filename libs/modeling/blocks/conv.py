"""ActionFormer's ConvBlock: a ResNet basic block on masked sequences ("conv" backbone)."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import MaskedConv1D
from .base import BLOCKS, TemporalBlock


@BLOCKS.register("conv")
class ConvBlock(TemporalBlock):
    """conv k (stride s, C → 2C) → ReLU → conv k (2C → C), plus the identity, then ReLU.

    Downsampling happens inside the block: the first conv is strided and the identity path is a
    strided 1×1 MaskedConv1D (ResNet), so the receptive field grows by the block's own convs only.
    `drop_path` is accepted for the common signature; the reference ConvBlock has none, so it
    must be 0.
    """

    def __init__(
        self,
        dim: int,
        stride: int = 1,
        drop_path: float = 0.0,
        kernel_size: int = 3,
        expansion_factor: int = 2,
    ):
        super().__init__(dim, stride, drop_path)
        if drop_path != 0.0:
            raise ValueError(
                "ConvBlock has no drop path (reference ActionFormer ConvBlock); set drop_path to 0"
            )
        if kernel_size % 2 != 1 or kernel_size < 3:
            raise ValueError(f"ConvBlock needs an odd kernel_size >= 3, got {kernel_size}")
        width, pad = dim * expansion_factor, kernel_size // 2
        self.conv1 = MaskedConv1D(dim, width, kernel_size, stride, padding=pad)
        self.conv2 = MaskedConv1D(width, dim, kernel_size, 1, padding=pad)
        # a 1×1 strided conv keeps the identity path shape-compatible (ResNet "option B")
        self.downsample = MaskedConv1D(dim, dim, 1, stride) if stride > 1 else None
        self.act = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, T], mask [B, 1, T] -> ([B, C, T // s], [B, 1, T // s])."""
        out, out_mask = self.conv1(x, mask)  # [B, 2C, T // s]
        out, out_mask = self.conv2(self.act(out), out_mask)  # [B, C, T // s]
        identity = x if self.downsample is None else self.downsample(x, mask)[0]  # [B, C, T // s]
        return self.act(out + identity), out_mask
