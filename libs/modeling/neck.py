"""Necks between the backbone pyramid and the heads (ActionFormer's FPNIdentity and FPN1D)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LayerNorm, MaskedConv1D


class FPNIdentity(nn.Module):
    """One channel LayerNorm per level (`fpn_norms.{l}`), or nothing; masks pass through."""

    def __init__(self, in_channels: list[int], out_channel: int, with_ln: bool = True):
        super().__init__()
        if any(c != out_channel for c in in_channels):
            raise ValueError(
                f"identity neck needs every input level to have {out_channel} channels, "
                f"got {in_channels}"
            )
        self.in_channels = list(in_channels)
        self.fpn_norms = nn.ModuleList(
            LayerNorm(out_channel) if with_ln else nn.Identity() for _ in in_channels
        )

    def forward(
        self, feats: list[Tensor], masks: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """feats [B, C, T_l], masks [B, 1, T_l] per level -> same shapes."""
        if len(feats) != len(self.fpn_norms):
            raise ValueError(f"neck built for {len(self.fpn_norms)} levels got {len(feats)}")
        return [norm(x) for norm, x in zip(self.fpn_norms, feats)], list(masks)


class FPN1D(nn.Module):
    """Feature pyramid: 1×1 laterals, top-down nearest upsampling, depthwise k3 conv, LayerNorm.

    Convs have no bias when followed by a LayerNorm. Masks are returned unchanged (VMS).
    """

    def __init__(
        self, in_channels: list[int], out_channel: int, scale_factor: int = 2, with_ln: bool = True
    ):
        super().__init__()
        self.in_channels, self.scale_factor = list(in_channels), scale_factor
        self.lateral_convs = nn.ModuleList(
            MaskedConv1D(c, out_channel, 1, bias=not with_ln) for c in in_channels
        )
        self.fpn_convs = nn.ModuleList(
            MaskedConv1D(
                out_channel, out_channel, 3, padding=1, bias=not with_ln, groups=out_channel
            )
            for _ in in_channels
        )
        self.fpn_norms = nn.ModuleList(
            LayerNorm(out_channel) if with_ln else nn.Identity() for _ in in_channels
        )

    def forward(
        self, feats: list[Tensor], masks: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """feats [B, C_l, T_l], masks [B, 1, T_l] per level -> feats [B, C_out, T_l], same masks."""
        if len(feats) != len(self.lateral_convs):
            raise ValueError(f"neck built for {len(self.lateral_convs)} levels got {len(feats)}")
        laterals = [
            conv(x, m)[0] for conv, x, m in zip(self.lateral_convs, feats, masks)
        ]  # [B, C_out, T_l]
        for i in range(len(laterals) - 1, 0, -1):  # coarse to fine
            up = F.interpolate(laterals[i], scale_factor=self.scale_factor, mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up  # [B, C_out, T_{l-1}]
        outs = [
            norm(conv(x, m)[0])
            for conv, norm, x, m in zip(self.fpn_convs, self.fpn_norms, laterals, masks)
        ]
        return outs, list(masks)
