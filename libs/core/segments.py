"""The ONE pair of seconds <-> feature-grid conversions, and the clamp of segments to a video.

A feature index i denotes the clip centred at frame `i * feat_stride + num_frames / 2`, so

    grid    = (seconds * fps - 0.5 * num_frames) / feat_stride
    seconds = (grid * feat_stride + 0.5 * num_frames) / fps

The datasets (`libs.datasets.base`, targets) and tools/make_synthetic.py go seconds -> grid;
post-processing (`libs.inference.postprocess`, detections) goes grid -> seconds. Segment tIoU
lives with its users: `libs.evaluation.matching.pair_tiou` (mAP) and `libs.ops.nms` (NMS).
"""
from torch import Tensor


def seconds_to_grid(seconds: Tensor, fps: float, feat_stride: float, num_frames: float) -> Tensor:
    """Seconds → feature-grid units (small negative values are allowed). Any shape."""
    return (seconds * fps - 0.5 * num_frames) / feat_stride


def grid_to_seconds(grid: Tensor, fps: float, feat_stride: float, num_frames: float) -> Tensor:
    """Feature-grid units → seconds. Inverse of `seconds_to_grid`. Any shape."""
    return (grid * feat_stride + 0.5 * num_frames) / fps


def clamp_segments(segments: Tensor, duration: float) -> Tensor:
    """Clamp [N, 2] segments (seconds) into [0, duration]."""
    return segments.clamp(min=0.0, max=float(duration))
