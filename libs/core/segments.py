"""Segment math on [N, 2] tensors, and the ONE pair of seconds ↔ feature-grid conversions.

A feature index i denotes the clip centred at frame `i * feat_stride + num_frames / 2`, so

    grid    = (seconds * fps - 0.5 * num_frames) / feat_stride
    seconds = (grid * feat_stride + 0.5 * num_frames) / fps

Only `libs.datasets` and `libs.postprocessing` call these two functions.
"""
from torch import Tensor
import torch


def seconds_to_grid(seconds: Tensor, fps: float, feat_stride: float, num_frames: float) -> Tensor:
    """Seconds → feature-grid units (small negative values are allowed). Any shape."""
    return (seconds * fps - 0.5 * num_frames) / feat_stride


def grid_to_seconds(grid: Tensor, fps: float, feat_stride: float, num_frames: float) -> Tensor:
    """Feature-grid units → seconds. Inverse of `seconds_to_grid`. Any shape."""
    return (grid * feat_stride + 0.5 * num_frames) / fps


def clamp_segments(segments: Tensor, duration: float) -> Tensor:
    """Clamp [N, 2] segments (seconds) into [0, duration]."""
    return segments.clamp(min=0.0, max=float(duration))


def segment_lengths(segments: Tensor) -> Tensor:
    """[N, 2] → [N]."""
    return segments[:, 1] - segments[:, 0]


def pairwise_tiou(a: Tensor, b: Tensor) -> Tensor:
    """Temporal IoU of every pair: a [N, 2], b [M, 2] → [N, M]. 0 when the union is empty."""
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)  # [N, M]
    union = segment_lengths(a)[:, None] + segment_lengths(b)[None, :] - inter  # [N, M]
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def segment_iou(segment: Tensor, candidates: Tensor) -> Tensor:
    """tIoU of one segment [2] with candidates [M, 2] → [M]."""
    return pairwise_tiou(segment[None], candidates)[0]
