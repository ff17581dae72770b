"""Batching: pad a list of VideoSample into one `Batch` (padding value 0, boolean masks).

Padding lengths follow the reference `preprocessing` of ActionFormer / video-mamba-suite:
  - training: every sample is padded to exactly `max_seq_len` (a longer sample is an error,
    because the training crop should have shortened it);
  - evaluation: to `max_seq_len` when the longest video fits, else up to the next multiple of
    the model's `size_divisor` (the backbone needs T divisible by every level stride x window).
"""
from __future__ import annotations

import math

import torch

from libs.core.structures import Batch, VideoSample


def padded_length(max_len: int, max_seq_len: int, size_divisor: int, is_training: bool) -> int:
    """Length every sample of a batch is padded to, given the longest one (`max_len`)."""
    if is_training or max_len <= max_seq_len:
        return max_seq_len
    return math.ceil(max_len / size_divisor) * size_divisor


def _check_samples(samples: list[VideoSample], max_seq_len: int, is_training: bool) -> None:
    """Raise with the video id when a batch cannot be padded consistently."""
    if not samples:
        raise ValueError("collate got an empty list of samples")
    channels = samples[0].feats.shape[0]
    for s in samples:
        if s.feats.shape[0] != channels:
            raise ValueError(f"video '{s.video_id}' has {s.feats.shape[0]} feature channels, "
                             f"but '{samples[0].video_id}' has {channels}")
        if is_training and s.num_feats > max_seq_len:
            raise ValueError(f"training video '{s.video_id}' has {s.num_feats} features > max_seq_len "
                             f"{max_seq_len}; the training crop (truncate_feats) should have shortened it")


def collate(samples: list[VideoSample], max_seq_len: int, size_divisor: int, is_training: bool) -> Batch:
    """Pad samples into a Batch; a pure function of its arguments.

    Args:
        samples: B videos, feats [C, T_i] float32.
        max_seq_len: training length (and minimum padded length at evaluation).
        size_divisor: the model's padding divisor for evaluation videos longer than max_seq_len.
        is_training: selects the padding rule (see the module docstring).
    Returns:
        Batch with feats [B, C, T_pad] (zero padding), masks [B, 1, T_pad] bool
        (True at valid positions), and the samples themselves.
    """
    if size_divisor < 1:
        raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
    _check_samples(samples, max_seq_len, is_training)
    lengths = torch.tensor([s.num_feats for s in samples])  # [B]
    t_pad = padded_length(int(lengths.max()), max_seq_len, size_divisor, is_training)
    feats = samples[0].feats.new_zeros(len(samples), samples[0].feats.shape[0], t_pad)  # [B, C, T_pad]
    for i, s in enumerate(samples):
        feats[i, :, : s.num_feats] = s.feats
    masks = torch.arange(t_pad)[None, :] < lengths[:, None]  # [B, T_pad]
    return Batch(feats=feats, masks=masks[:, None, :], samples=list(samples))  # masks [B, 1, T_pad]
