"""Focal loss and centre-DIoU loss: hand-computed values and limiting cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from libs.modeling.losses import ctr_diou_loss_1d, sigmoid_focal_loss


def test_focal_without_gamma_and_alpha_is_bce():
    x, t = torch.randn(5, 3), torch.rand(5, 3)
    torch.testing.assert_close(
        sigmoid_focal_loss(x, t, alpha=-1, gamma=0.0),
        F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    )


def test_focal_known_values():
    # x = 0: p = 0.5, BCE = log 2, (1 − p_t)^2 = 0.25; α_t = 0.25 for t = 1 and 0.75 for t = 0
    loss = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(
        loss, torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)])
    )
    # soft target t = 0.1 (label smoothing), x = 2
    p, t = 1 / (1 + math.exp(-2.0)), 0.1
    ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    expected = (0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2
    assert math.isclose(
        sigmoid_focal_loss(torch.tensor([2.0]), torch.tensor([t])).item(), expected, rel_tol=1e-5
    )


def test_focal_reductions():
    x, t = torch.randn(4, 2), torch.randint(0, 2, (4, 2)).float()
    full = sigmoid_focal_loss(x, t)
    torch.testing.assert_close(sigmoid_focal_loss(x, t, reduction="sum"), full.sum())
    torch.testing.assert_close(sigmoid_focal_loss(x, t, reduction="mean"), full.mean())
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(x, t, reduction="max")


def test_focal_is_float32_under_half_inputs():
    assert (
        sigmoid_focal_loss(torch.zeros(3, dtype=torch.bfloat16), torch.ones(3)).dtype
        == torch.float32
    )


def test_diou_perfect_is_zero():
    off = torch.tensor([[1.0, 2.0], [0.5, 7.0]])
    torch.testing.assert_close(ctr_diou_loss_1d(off, off), torch.zeros(2))


def test_diou_known_values():
    pred = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    target = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    # row 0: inter 2, union 4, IoU 0.5; enclosing 4, ρ = ½(1 − 1 − 3 + 1) = −1 → 0.5 + 1/16
    # row 1: disjoint halves: IoU 0; enclosing 4, ρ = ½(0 − 2 − 2 + 0) = −2 → 1 + 1/4
    torch.testing.assert_close(ctr_diou_loss_1d(pred, target), torch.tensor([0.5625, 1.25]))
    torch.testing.assert_close(
        ctr_diou_loss_1d(pred, target, reduction="sum"), torch.tensor(1.8125)
    )


def test_diou_degenerate_and_empty():
    assert torch.isfinite(ctr_diou_loss_1d(torch.zeros(1, 2), torch.zeros(1, 2))).all()
    empty = torch.zeros(0, 2, requires_grad=True)
    assert ctr_diou_loss_1d(empty, torch.zeros(0, 2), reduction="mean").item() == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        ctr_diou_loss_1d(torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
