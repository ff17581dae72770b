"""Typed objects that cross module boundaries: datasets → model → post-processing → evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import Tensor


@dataclass
class VideoSample:
    """One video as returned by `Dataset.__getitem__` (segments already on the feature grid)."""

    video_id: str
    feats: Tensor  # [C, T] float32
    segments: Optional[Tensor]  # [N, 2] float32, feature-grid units (None when no GT is given)
    labels: Optional[Tensor]  # [N] int64 (dataset label ids)
    fps: float
    duration: float  # seconds
    feat_stride: float  # frames between consecutive features (after downsampling)
    feat_num_frames: float  # frames covered by one feature

    def __post_init__(self):
        if self.feats.dim() != 2:
            raise ValueError(f"video '{self.video_id}': feats must be [C, T], got {tuple(self.feats.shape)}")
        if (self.segments is None) != (self.labels is None):
            raise ValueError(f"video '{self.video_id}': segments and labels must both be set or both None")
        if self.segments is not None:
            if self.segments.dim() != 2 or self.segments.shape[-1] != 2:
                raise ValueError(f"video '{self.video_id}': segments must be [N, 2], got {tuple(self.segments.shape)}")
            if len(self.segments) != len(self.labels):
                raise ValueError(f"video '{self.video_id}': {len(self.segments)} segments but {len(self.labels)} labels")

    @property
    def num_feats(self) -> int:
        return self.feats.shape[-1]


@dataclass
class Batch:
    """Padded model input; padding and masks are made in `collate`, not inside the model."""

    feats: Tensor  # [B, C, T_pad] float32, zero at padded positions
    masks: Tensor  # [B, 1, T_pad] bool, True at valid positions
    samples: list = field(default_factory=list)  # list[VideoSample]: metadata + GT, stays on CPU

    def __post_init__(self):
        if self.feats.dim() != 3 or self.masks.dim() != 3 or self.masks.shape[1] != 1:
            raise ValueError(f"Batch expects feats [B,C,T] and masks [B,1,T], got {tuple(self.feats.shape)} and {tuple(self.masks.shape)}")
        if self.feats.shape[0] != self.masks.shape[0] or self.feats.shape[-1] != self.masks.shape[-1]:
            raise ValueError(f"Batch feats {tuple(self.feats.shape)} and masks {tuple(self.masks.shape)} disagree")

    def __len__(self) -> int:
        return self.feats.shape[0]

    def to(self, device: Union[str, torch.device]) -> "Batch":
        return Batch(self.feats.to(device, non_blocking=True), self.masks.to(device, non_blocking=True), self.samples)

    def pin_memory(self) -> "Batch":
        """Called by DataLoader(pin_memory=True): page-locked feats/masks make `.to(cuda)` asynchronous."""
        return Batch(self.feats.pin_memory(), self.masks.pin_memory(), self.samples)


@dataclass
class Detections:
    """Detections of one video. `unit` is "grid" (model output, pre-NMS) or "sec" (final)."""

    video_id: str
    segments: Tensor  # [K, 2] float32
    scores: Tensor  # [K] float32
    labels: Tensor  # [K] int64 (dataset label ids)
    unit: str = "grid"

    def __post_init__(self):
        if not (len(self.segments) == len(self.scores) == len(self.labels)):
            raise ValueError(
                f"video '{self.video_id}': Detections field lengths differ "
                f"({len(self.segments)} segments, {len(self.scores)} scores, {len(self.labels)} labels)"
            )
        if self.unit not in ("grid", "sec"):
            raise ValueError(f"Detections.unit must be 'grid' or 'sec', got {self.unit!r}")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, idx) -> "Detections":
        """Index or mask every field at once."""
        return Detections(self.video_id, self.segments[idx], self.scores[idx], self.labels[idx], self.unit)

    @staticmethod
    def empty(video_id: str, unit: str = "grid") -> "Detections":
        return Detections(video_id, torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long), unit)
