"""Classification and regression heads shared by all levels (ActionFormer PtTransformer*Head)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LayerNorm, MaskedConv1D, Scale, prior_bias


def _trunk(
    input_dim: int, feat_dim: int, num_layers: int, kernel_size: int, with_ln: bool
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """(num_layers − 1) × [MaskedConv1D → LayerNorm or Identity]; the ReLU is applied in forward."""
    head, norm = nn.ModuleList(), nn.ModuleList()
    for idx in range(num_layers - 1):
        in_dim = input_dim if idx == 0 else feat_dim
        head.append(
            MaskedConv1D(in_dim, feat_dim, kernel_size, padding=kernel_size // 2, bias=not with_ln)
        )
        norm.append(LayerNorm(feat_dim) if with_ln else nn.Identity())
    return head, norm


def _run_trunk(
    head: nn.ModuleList, norm: nn.ModuleList, act: nn.Module, x: Tensor, mask: Tensor
) -> Tensor:
    for conv, ln in zip(head, norm):
        x = act(ln(conv(x, mask)[0]))  # [B, feat_dim, T_l]
    return x


class ClsHead(nn.Module):
    """Per-level class logits: a conv trunk and a k-wide MaskedConv1D classifier, shared by levels.

    The classifier bias starts at the prior logit −log((1 − p) / p) (focal-loss stability), and
    classes in `empty_cls` at −log((1 − 1e-6) / 1e-6) so that they never fire.
    """

    def __init__(
        self,
        input_dim: int,
        feat_dim: int,
        num_classes: int,
        prior_prob: float = 0.01,
        num_layers: int = 3,
        kernel_size: int = 3,
        with_ln: bool = False,
        empty_cls: tuple[int, ...] = (),
    ):
        super().__init__()
        self.act = nn.ReLU()
        self.head, self.norm = _trunk(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.cls_head = MaskedConv1D(feat_dim, num_classes, kernel_size, padding=kernel_size // 2)
        if prior_prob > 0:  # VMS always applies it; p = 0 would be −inf, so AF HEAD skips it
            nn.init.constant_(self.cls_head.conv.bias, prior_bias(prior_prob))
        for idx in empty_cls:
            nn.init.constant_(self.cls_head.conv.bias[idx], prior_bias(1e-6))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """feats [B, C, T_l], masks [B, 1, T_l] per level -> logits [B, num_classes, T_l] each."""
        return [
            self.cls_head(_run_trunk(self.head, self.norm, self.act, x, m), m)[0]
            for x, m in zip(feats, masks)
        ]


class RegHead(nn.Module):
    """Per-level (left, right) distances in units of the level stride: ReLU(Scale_l · offsets)."""

    def __init__(
        self,
        input_dim: int,
        feat_dim: int,
        fpn_levels: int,
        num_layers: int = 3,
        kernel_size: int = 3,
        with_ln: bool = False,
    ):
        super().__init__()
        self.act = nn.ReLU()
        self.head, self.norm = _trunk(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.scale = nn.ModuleList(Scale() for _ in range(fpn_levels))
        self.offset_head = MaskedConv1D(feat_dim, 2, kernel_size, padding=kernel_size // 2)

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """feats [B, C, T_l], masks [B, 1, T_l] per level -> offsets [B, 2, T_l] each, ≥ 0."""
        if len(feats) != len(self.scale):
            raise ValueError(f"regression head built for {len(self.scale)} levels got {len(feats)}")
        outs = []
        for scale, x, m in zip(self.scale, feats, masks):
            offsets = self.offset_head(_run_trunk(self.head, self.norm, self.act, x, m), m)[
                0
            ]  # [B, 2, T_l]
            outs.append(F.relu(scale(offsets)))
        return outs
