"""Anchor points of the feature pyramid (ActionFormer's PointGenerator)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointBufferTooShort(ValueError):
    """A video longer than the point buffer (max_seq_len x model.max_buffer_len_factor)."""


class PointGenerator(nn.Module):
    """Per level l a buffer of rows [t, reg_min_l, reg_max_l, stride_l], t = 0, s_l, 2 s_l, ...

    Times are level-0 grid units with no half-stride offset. The buffers cover
    `buffer_len` = max_seq_len · max_buffer_len_factor level-0 steps and are non-persistent
    (not in checkpoints).
    """

    def __init__(self, buffer_len: float, fpn_levels: int, scale_factor: int, regression_range):
        super().__init__()
        if len(regression_range) != fpn_levels:
            raise ValueError(
                f"PointGenerator: {len(regression_range)} regression ranges for {fpn_levels} levels"
            )
        if buffer_len % scale_factor ** (fpn_levels - 1) != 0:
            raise ValueError(
                f"PointGenerator: buffer length {buffer_len} is not divisible by the top stride "
                f"{scale_factor ** (fpn_levels - 1)}"
            )
        self.fpn_levels, self.scale_factor = fpn_levels, scale_factor
        self.fpn_strides = [scale_factor**level for level in range(fpn_levels)]
        for level, (stride, (lo, hi)) in enumerate(zip(self.fpn_strides, regression_range)):
            t = torch.arange(0, buffer_len, stride, dtype=torch.float32)[:, None]  # [N_l, 1]
            row = torch.tensor([[lo, hi, stride]], dtype=torch.float32)  # [1, 3]
            self.register_buffer(
                f"buffer_points_{level}",
                torch.cat([t, row.expand(len(t), 3)], dim=1),
                persistent=False,
            )

    def buffer(self, level: int) -> Tensor:
        """[N_l, 4] rows of level `level`."""
        return getattr(self, f"buffer_points_{level}")

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """feats [B, C, T_l] per level -> points [T_l, 4] per level (shared by the batch)."""
        if len(feats) != self.fpn_levels:
            raise ValueError(f"PointGenerator built for {self.fpn_levels} levels got {len(feats)}")
        points = []
        for level, x in enumerate(feats):
            buf = self.buffer(level)
            if x.shape[-1] > len(buf):
                raise PointBufferTooShort(
                    f"Reached max buffer length for point generator: level {level} has "
                    f"{x.shape[-1]} steps, the buffer {len(buf)}: multiply "
                    f"model.max_buffer_len_factor by at least {x.shape[-1] / len(buf):.2f} "
                    "(--opts model.max_buffer_len_factor=...; the buffer holds no weights)"
                )
            points.append(buf[: x.shape[-1]])
        return points
