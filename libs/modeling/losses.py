"""Losses of the detector: sigmoid focal loss (classification), centre-DIoU (regression) and
the EMA loss normaliser both are divided by.

Same formulas as ActionFormer's `losses.py` (fvcore-derived); computed in float32. The
normaliser follows ActionFormer's `PtTransformer.losses` (momentum 0.9, `init_loss_norm`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


LOSS_NORMALIZER_MOMENTUM = 0.9


def ema_loss_normalizer(
    previous: float, num_pos: float, momentum: float = LOSS_NORMALIZER_MOMENTUM
) -> float:
    """The normaliser after a batch with `num_pos` positive points: m n + (1 - m) max(num_pos, 1).

    Plain Python floats (float64), as in the reference; the detector keeps the value in a
    float64 buffer and gradient accumulation applies it once per global batch.
    """
    return momentum * previous + (1 - momentum) * max(num_pos, 1)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    """RetinaNet focal loss on logits with (possibly soft) binary targets.

    loss = α_t · BCE(x, t) · (1 − p_t)^γ with p_t = p·t + (1 − p)(1 − t),
    α_t = α·t + (1 − α)(1 − t); α < 0 disables the α weighting.

    Args:
        inputs: logits, any shape. targets: same shape, in [0, 1].
    Returns:
        loss of the input shape ("none") or a scalar ("sum" / "mean").
    """
    inputs, targets = inputs.float(), targets.float()
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def ctr_diou_loss_1d(
    input_offsets: Tensor, target_offsets: Tensor, reduction: str = "none", eps: float = 1e-8
) -> Tensor:
    """Distance-IoU loss of 1-D segments that share a centre point t: (t − l, t + r).

    loss = 1 − IoU + (ρ / c)², ρ = centre distance = ½(r_p − l_p − r_g + l_g),
    c = enclosing length.

    Args:
        input_offsets, target_offsets: [N, 2] non-negative (left, right) distances.
    Returns:
        [N] ("none") or a scalar.
    """
    input_offsets, target_offsets = input_offsets.float(), target_offsets.float()
    if not bool((input_offsets >= 0).all()) or not bool((target_offsets >= 0).all()):
        raise ValueError("ctr_diou_loss_1d: offsets must be non-negative")
    lp, rp = input_offsets[:, 0], input_offsets[:, 1]
    lg, rg = target_offsets[:, 0], target_offsets[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)  # [N]
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    loss = 1.0 - iou + torch.square(rho / enclosing.clamp(min=eps))
    return _reduce(loss, reduction)
