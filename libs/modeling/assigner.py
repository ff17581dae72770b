"""Label assignment: which pyramid points are positive for which ground-truth actions.

Reference: ActionFormer's `label_points_single_video` (centre sampling, regression ranges,
shortest-action tie-break with a 1e-3 tolerance, multi-label class targets). Vectorised over
all points × all GT segments of a video; `tests/test_assigner.py` holds a loop version.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# actions whose lengths differ by ≤ this share a point (THUMOS duplicates, CliffDiving ⊂ Diving)
_TIE_TOL = 1e-3


@torch.no_grad()
def label_points_single_video(
    points: Tensor,
    gt_segments: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    center_sample: str = "radius",
    center_sample_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """Targets of one video.

    Args:
        points: [P, 4] rows [t, reg_min, reg_max, stride] of all levels concatenated.
        gt_segments: [N, 2] (start, end) in level-0 grid units.
        gt_labels: [N] int64 class ids in [0, num_classes).
    Returns:
        cls_targets [P, num_classes] in {0, 1} (several 1s when equally short actions overlap);
        reg_targets [P, 2] (left, right) distances / stride to the shortest matching action
        (meaningless where cls_targets is all zero).
    """
    P, N = points.shape[0], gt_segments.shape[0]
    if N == 0:
        return points.new_zeros(P, num_classes), points.new_zeros(P, 2)
    t, reg_min, reg_max, stride = (points[:, i, None] for i in range(4))  # [P, 1] each
    start, end = gt_segments[None, :, 0], gt_segments[None, :, 1]  # [1, N]
    left, right = t - start, end - t  # [P, N]

    if center_sample == "radius":
        center = 0.5 * (start + end)  # [1, N]
        t_min = torch.maximum(center - stride * center_sample_radius, start)  # [P, N]
        t_max = torch.minimum(center + stride * center_sample_radius, end)
        inside = torch.minimum(t - t_min, t_max - t) > 0  # [P, N]
    elif center_sample == "none":
        inside = torch.minimum(left, right) > 0
    else:
        raise ValueError(f"center_sample must be 'radius' or 'none', got {center_sample!r}")
    max_dist = torch.maximum(left, right)
    in_range = (max_dist >= reg_min) & (max_dist <= reg_max)  # both ends inclusive, [P, N]

    lens = (end - start).expand(P, N).masked_fill(~(inside & in_range), float("inf"))  # [P, N]
    min_len, min_idx = lens.min(dim=1)  # [P]
    matched = (lens <= min_len[:, None] + _TIE_TOL) & torch.isfinite(lens)  # [P, N]
    one_hot = F.one_hot(gt_labels.long(), num_classes).to(lens.dtype)  # [N, C]
    cls_targets = (matched.to(lens.dtype) @ one_hot).clamp_(0.0, 1.0)  # [P, C]
    rows = torch.arange(P, device=points.device)
    reg_targets = torch.stack([left[rows, min_idx], right[rows, min_idx]], dim=1) / stride  # [P, 2]
    return cls_targets, reg_targets


@torch.no_grad()
def label_points(
    points: list[Tensor],
    gt_segments: list[Tensor | None],
    gt_labels: list[Tensor | None],
    num_classes: int,
    center_sample: str = "radius",
    center_sample_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """Targets of a batch; a video without GT (None or zero rows) gets all-background targets.

    Args:
        points: per level [T_l, 4]; gt_segments / gt_labels: per video [N_b, 2] / [N_b] or None.
    Returns:
        gt_cls [B, P, num_classes], gt_offsets [B, P, 2] with P = Σ_l T_l.
    """
    concat = torch.cat(points, dim=0)  # [P, 4]
    cls_out, reg_out = [], []
    for segs, labels in zip(gt_segments, gt_labels):
        if segs is None or labels is None:
            segs, labels = concat.new_zeros(0, 2), torch.zeros(
                0, dtype=torch.long, device=concat.device
            )
        cls_t, reg_t = label_points_single_video(
            concat,
            segs.to(concat),
            labels.to(concat.device),
            num_classes,
            center_sample,
            center_sample_radius,
        )
        cls_out.append(cls_t)
        reg_out.append(reg_t)
    return torch.stack(cls_out), torch.stack(reg_out)
