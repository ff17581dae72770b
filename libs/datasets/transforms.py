"""Feature-sequence transforms applied inside `Dataset.__getitem__` (all on the feature grid).

- `downsample`: keep every r-th feature (the stride grows by r).
- `resize_feats`: linear resize to a fixed length (ANet-style `feat_sampling: resize`).
- `clip_to_length`: the ANet/HACS training clean-up of segments that run past the features.
- `truncate_feats`: the random training crop of video-mamba-suite (window clipped to [st, ed]).
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Optional, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from libs.core.structures import VideoSample


class RandIntSource(Protocol):
    """Anything with Python's `randint(a, b)` (inclusive): the `random` module or a `random.Random`."""

    def randint(self, a: int, b: int) -> int: ...


def downsample(feats: Tensor, rate: int) -> Tensor:
    """Keep every `rate`-th feature: [C, T] → [C, ceil(T / rate)] (reference `feats[::r]`)."""
    if rate < 1:
        raise ValueError(f"downsample rate must be >= 1, got {rate}")
    return feats[:, ::rate].contiguous() if rate > 1 else feats  # [C, ceil(T / r)]


def resize_feats(feats: Tensor, length: int) -> Tensor:
    """Linearly resize [C, T] → [C, length] (align_corners=False, as the reference ANet loader)."""
    if feats.shape[-1] == length:
        return feats
    return F.interpolate(feats[None], size=length, mode="linear", align_corners=False)[0]  # [C, length]


def clip_to_length(segments: Tensor, labels: Tensor, vid_len: float,
                   trunc_thresh: float) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Drop / clamp grid segments that run past the end of the features (ANet/HACS training only).

    A few ANet videos have missing frames, so their actions reach beyond the features. Segments
    starting at or after `vid_len` are dropped; the others are kept when at least `trunc_thresh`
    of their length lies before `vid_len`, and their end is clamped to `vid_len`.

    Args:
        segments: [N, 2] float32, grid units, end > start.
        labels: [N] int64.
        vid_len: number of features + feat_offset (grid units).
        trunc_thresh: minimum kept fraction.
    Returns:
        (segments [M, 2], labels [M]) or (None, None) when nothing survives.
    """
    starts, ends = segments[:, 0], segments[:, 1]  # [N], [N]
    ratio = (ends.clamp(max=vid_len) - starts) / (ends - starts)  # [N]
    keep = (starts < vid_len) & (ratio >= trunc_thresh)  # [N]
    if not bool(keep.any()):
        return None, None
    return segments[keep].clamp(max=vid_len), labels[keep]  # [M, 2], [M]


def _crop_length(num_feats: int, max_seq_len: int, crop_ratio: Optional[tuple[float, float]],
                 rng: RandIntSource) -> int:
    """Window length of the training crop; `num_feats` means "no crop" (reference semantics)."""
    if num_feats > max_seq_len:
        return max_seq_len  # crop_ratio is not applied to long videos
    if crop_ratio is None:
        return num_feats
    # Python's round (banker's rounding) as in the reference, so crops match draw for draw
    low = max(round(crop_ratio[0] * num_feats), 1)
    high = min(round(crop_ratio[1] * num_feats), num_feats)
    return rng.randint(low, high)


def truncate_feats(sample: VideoSample, max_seq_len: int, trunc_thresh: float,
                   crop_ratio: Optional[tuple[float, float]] = None, max_num_trials: int = 200,
                   rng: RandIntSource = random) -> VideoSample:
    """Random training crop of a sample with segments (video-mamba-suite `truncate_feats`).

    The window length is `max_seq_len` for long videos, or a random fraction (`crop_ratio`) of
    short ones. Up to `max_num_trials` windows [st, st + L) are drawn until one keeps at least one
    segment with `overlap / length >= trunc_thresh`; if none does, the last window is used (and
    may hold no segment). Kept segments are clipped to the window and shifted by -st.

    Args:
        sample: feats [C, T], segments [N, 2] grid units (not None), labels [N].
        rng: source of `randint`; Python's global `random` by default, as in the reference, so
            the DataLoader worker seeding controls it.
    Returns:
        A new VideoSample with feats [C, L], segments [M, 2], labels [M] (M may be 0).
    """
    num_feats = sample.num_feats
    length = _crop_length(num_feats, max_seq_len, crop_ratio, rng)
    if length == num_feats:
        return sample
    segments = sample.segments  # [N, 2]
    seg_len = (segments[:, 1] - segments[:, 0]).abs()  # [N]
    for _ in range(max_num_trials):
        st = rng.randint(0, num_feats - length)
        ed = st + length
        # VMS variant: the window is exactly [st, ed] (AF widens it by feat_offset)
        left = segments[:, 0].clamp(min=float(st))  # [N]
        right = segments[:, 1].clamp(max=float(ed))  # [N]
        keep = (right - left).clamp(min=0) / seg_len >= trunc_thresh  # [N]
        if bool(keep.any()):
            break
    return replace(
        sample,
        feats=sample.feats[:, st:ed].clone(),  # [C, L]
        segments=torch.stack((left[keep], right[keep]), dim=1) - st,  # [M, 2]
        labels=sample.labels[keep].clone(),  # [M]
    )
