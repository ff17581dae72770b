"""`ActivityNetFormatDataset`: videos of an ActivityNet-style annotation JSON plus their features.

The JSON looks like `{"database": {video_id: {"subset", "duration", "fps"?, "annotations": [
{"label", "segment": [start_s, end_s], "label_id"}]}}}`. The per-dataset differences of the
reference loaders (THUMOS, ANet, HACS, FineAction) are a handful of class attributes, set by the
thin registered subclasses:

| attribute            | meaning                                                                |
|----------------------|------------------------------------------------------------------------|
| filter_annotations   | drop zero/negative-length and duplicate (1e-3 s, same label) events   |
| skip_filtered_videos | skip a video whose annotations were all filtered out (else: no GT)     |
| clip_to_features     | training: drop/clamp segments that run past the features               |
| builtin_ignore       | video ids always skipped (known bad videos), on top of `ignore_videos` |
| default_duration     | duration used when the JSON has none (None: the JSON must have it)     |

The base class itself is registered as `activitynet_format`, for user datasets set up by config.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from libs.core.annotations import build_label_dict  # noqa: F401  (tools/infer.py imports it from here)
from libs.core.annotations import (AnnotationFile, is_number, read_annotations, remove_duplicate_annotations,
                                   video_length_problem)
from libs.core.registry import Registry
from libs.core.segments import seconds_to_grid
from libs.core.structures import VideoSample
from libs.datasets import features as featio
from libs.datasets.transforms import clip_to_length, downsample, resize_feats, truncate_feats
from libs.utils.paths import check_file_name

logger = logging.getLogger(__name__)

DATASETS = Registry("dataset", config_key="dataset.name")

FEAT_SAMPLINGS = ("variable", "resize")


def feature_grid(feats: Tensor, sampling: str, feat_stride: float, num_frames: float,
                 downsample_rate: int, max_seq_len: int) -> tuple[Tensor, float, float]:
    """Apply the sampling mode to raw features [C, T_raw]: (feats [C, T], feat_stride, num_frames).

    variable: `feats[::r]`, stride x r, num_frames unchanged.
    resize:   linear resize to max_seq_len; the raw features span (T_raw - 1) * stride +
              num_frames frames, so the new stride is that span / max_seq_len, and
              num_frames = stride puts each feature at the centre of its cell (offset 0.5).
    Used by the datasets and by tools/infer.py (new videos without annotations).
    """
    if sampling == "variable":
        return downsample(feats, downsample_rate), feat_stride * downsample_rate, num_frames
    span = (feats.shape[-1] - 1) * feat_stride + num_frames
    stride = span / max_seq_len
    return resize_feats(feats, max_seq_len), stride, stride  # [C, max_seq_len]


@dataclass(frozen=True)
class VideoRecord:
    """One video of the split, annotations still in seconds."""

    video_id: str
    fps: float
    duration: float  # seconds
    segments: Optional[np.ndarray]  # [N, 2] float64 seconds, or None
    labels: Optional[np.ndarray]  # [N] int64, or None


@DATASETS.register("activitynet_format")
class ActivityNetFormatDataset(Dataset):
    """Videos of one split of an ActivityNet-style JSON; `__getitem__` returns a VideoSample.

    Segments are returned on the feature grid (`core.segments.seconds_to_grid`). In training,
    samples with segments are randomly cropped (`transforms.truncate_feats`).
    """

    filter_annotations: bool = True
    skip_filtered_videos: bool = False
    clip_to_features: bool = True
    builtin_ignore: tuple[str, ...] = ()
    default_duration: Optional[float] = None

    def __init__(self, *, json_file: str, feat_folder: str, split: Sequence[str], is_training: bool,
                 feat_stride: float, num_frames: float, input_dim: int, num_classes: int,
                 default_fps: Optional[float] = None, downsample_rate: int = 1, max_seq_len: int = 2304,
                 trunc_thresh: float = 0.5, crop_ratio: Optional[Sequence[float]] = None,
                 feat_sampling: str = "variable", file_prefix: str = "", feature_type: str = "",
                 file_ext: str = ".pt", ignore_videos: Sequence[str] = ()):
        self.json_file, self.feat_folder = json_file, feat_folder
        split = (split,) if isinstance(split, str) else split  # "training" must not become its characters
        self.split = tuple(s.lower() for s in split)
        self.is_training = is_training
        self.feat_stride, self.num_frames = float(feat_stride), float(num_frames)
        self.input_dim, self.num_classes = input_dim, num_classes
        self.default_fps, self.downsample_rate = default_fps, downsample_rate
        self.max_seq_len, self.trunc_thresh = max_seq_len, trunc_thresh
        self.crop_ratio = tuple(crop_ratio) if crop_ratio is not None else None
        self.feat_sampling = feat_sampling
        self.file_prefix, self.feature_type, self.file_ext = file_prefix or "", feature_type or "", file_ext
        self.ignore_videos = frozenset(self.builtin_ignore) | frozenset(ignore_videos)
        self._check_args()

        annotations = self._read_annotations()
        database = annotations.database
        self.label_dict = dict(annotations.label_ids)  # label name -> JSON label_id, all subsets
        self._check_labels()
        self.id_to_name = dict(annotations.id_to_name)  # its inverse (one id per name, checked by the parser)
        self.records = self._make_records(database)
        self.video_ids = [r.video_id for r in self.records]
        self._check_feature_files()
        logger.info("%s: %d videos of split %s from %s (%d classes)", type(self).__name__,
                    len(self.records), self.split, json_file, len(self.label_dict))

    # ---------------------------------------------------------------------------------------
    # construction

    def _check_args(self) -> None:
        """Loud validation of the constructor arguments (cheap, before reading anything)."""
        name = type(self).__name__
        if self.feat_sampling not in FEAT_SAMPLINGS:
            raise ValueError(f"{name}: feat_sampling must be one of {FEAT_SAMPLINGS}, got {self.feat_sampling!r}")
        if self.feat_stride <= 0 or self.num_frames <= 0:
            raise ValueError(f"{name}: feat_stride and num_frames must be > 0 "
                             f"(got {self.feat_stride}, {self.num_frames})")
        if self.downsample_rate < 1:
            raise ValueError(f"{name}: downsample_rate must be >= 1, got {self.downsample_rate}")
        if self.feat_sampling == "resize" and self.downsample_rate != 1:
            # the reference silently ignores downsampling when resizing; say so instead
            raise ValueError(f"{name}: downsample_rate has no effect with feat_sampling 'resize'; set it to 1")
        ratio = self.crop_ratio
        if ratio is not None and (len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"{name}: crop_ratio must be (low, high) with 0 < low <= high, got {self.crop_ratio}")
        if not featio.is_single_file_store(self.feat_folder) and self.file_ext not in featio.FILE_EXTS:
            raise ValueError(f"{name}: file_ext must be one of {featio.FILE_EXTS} (or feat_folder one "
                             f"{'/'.join(featio.H5_EXTS)} file), got {self.file_ext!r}")
        if not self.split:
            raise ValueError(f"{name}: split is empty; give the JSON subsets to use (e.g. ['training'])")

    def _read_annotations(self) -> AnnotationFile:
        """The checked JSON, by the shared parser (every annotation needs a label_id here)."""
        if not os.path.exists(self.json_file):  # a FIFO or device: read_json names it
            raise FileNotFoundError(
                f"annotation file not found: {self.json_file} (relative paths are read from the "
                f"current folder {os.getcwd()}; run from the folder the config expects or give "
                "--opts dataset.json_file=PATH)")
        return read_annotations(self.json_file, require_label_ids=True)

    def _check_labels(self) -> None:
        """num_classes must match the JSON labels, and label ids must index the classifier."""
        if self.num_classes == 1:
            return  # class-agnostic: every label becomes 0
        if len(self.label_dict) != self.num_classes:
            raise ValueError(f"{self.json_file} has {len(self.label_dict)} action labels but dataset.num_classes = "
                             f"{self.num_classes}; set num_classes to {len(self.label_dict)} (or 1 for class-agnostic)")
        bad = {k: v for k, v in self.label_dict.items() if not 0 <= v < self.num_classes}
        if bad:
            raise ValueError(f"{self.json_file}: label_id values must lie in [0, {self.num_classes}), got {bad}")

    def _make_records(self, database: dict) -> tuple[VideoRecord, ...]:
        """One VideoRecord per video of the split, minus ignored and (optionally) emptied videos."""
        records, dropped, skipped = [], 0, 0
        for video_id, value in database.items():
            if str(value.get("subset", "")).lower() not in self.split or video_id in self.ignore_videos:
                continue
            segments, labels = self._annotations(video_id, value)
            dropped += len(value.get("annotations", [])) - (0 if segments is None else len(segments))
            if segments is None and self.skip_filtered_videos and value.get("annotations"):
                skipped += 1
                continue  # every annotation was filtered out: HACS skips the whole video
            fps, duration = self._fps(video_id, value), self._duration(video_id, value)
            too_long = video_length_problem(duration, fps)
            if too_long:  # caught here, not by the seconds <-> grid conversion after training
                raise ValueError(f"{self.json_file}: video '{video_id}': {too_long}")
            records.append(VideoRecord(video_id, fps, duration, segments, labels))
        if dropped:  # the reference clean-up (filter_annotations), said once instead of silently
            logger.info("%s: split %s: dropped %d zero-length / reversed / duplicate annotations, skipped %d videos "
                        "left without any", self.json_file, list(self.split), dropped, skipped)
        if not records:
            subsets = sorted({str(v.get("subset", "")) for v in database.values()})
            raise ValueError(f"{self.json_file}: no video of split {list(self.split)} (after removing ignored videos); "
                             f"subsets in the file: {subsets}")
        late = [(r.video_id, s.tolist(), r.duration) for r in records if r.segments is not None
                for s in r.segments if s[0] >= r.duration]
        if late:  # THUMOS-14 has 30 such segments (the reference keeps them, and so do we)
            logger.warning("%s: %d segments start after their video ends, e.g. video '%s' %s, duration %s; kept",
                           self.json_file, len(late), *late[0])
        return tuple(records)

    def _number(self, video_id: str, value: dict, key: str) -> float:
        """value[key] as a finite positive float, or an error naming the video."""
        x = value[key]
        if not is_number(x) or not math.isfinite(x) or x <= 0:
            raise ValueError(f"{self.json_file}: video '{video_id}': '{key}' must be a positive number, got {x!r}")
        return float(x)

    def _fps(self, video_id: str, value: dict) -> float:
        if self.default_fps is not None:
            return float(self.default_fps)
        if "fps" not in value:
            raise ValueError(f"{self.json_file}: video '{video_id}' has no 'fps'; set dataset.default_fps")
        return self._number(video_id, value, "fps")

    def _duration(self, video_id: str, value: dict) -> float:
        if "duration" in value:
            return self._number(video_id, value, "duration")
        if self.default_duration is None:
            raise ValueError(f"{self.json_file}: video '{video_id}' has no 'duration'")
        return float(self.default_duration)

    def _annotations(self, video_id: str, value: dict) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        """Filtered annotations as (segments [N, 2] seconds, labels [N]) or (None, None)."""
        acts = value.get("annotations", [])
        if self.filter_annotations:
            acts = remove_duplicate_annotations(acts)
        if not acts:
            return None, None
        segments = np.asarray([a["segment"] for a in acts], dtype=np.float64).reshape(-1, 2)  # [N, 2]
        for act, (start, end) in zip(acts, segments.tolist()):  # what the filter (if any) let through
            if end <= start or end <= 0:
                i = value["annotations"].index(act)
                why = "end <= start" if end <= start else "it ends before the video starts (end <= 0 s)"
                raise ValueError(f"{self.json_file}: video '{video_id}' annotation {i}: segment {act['segment']!r}: "
                                 f"{why}")
        if self.num_classes == 1:
            labels = np.zeros(len(acts), dtype=np.int64)  # [N]
        else:
            labels = np.asarray([self.label_dict[a["label"]] for a in acts], dtype=np.int64)  # [N]
        return segments, labels

    def _check_feature_files(self) -> None:
        """Fail at construction, naming the video and path, if any video has no features."""
        if featio.is_single_file_store(self.feat_folder):
            present = featio.h5_keys(self.feat_folder)
            expected = {r.video_id: featio.h5_key(r.video_id, self.file_prefix) for r in self.records}
            missing = [(vid, f"key {key!r} in {self.feat_folder}")
                       for vid, key in expected.items() if key not in present]
        else:
            for rec in self.records:  # ids become file names: none may point outside feat_folder
                check_file_name(rec.video_id, "video id", self.json_file, "video ids must be plain file names")
            if not os.path.isdir(self.feat_folder):
                raise FileNotFoundError(f"feature folder not found: {self.feat_folder}")
            present = set(os.listdir(self.feat_folder))  # one listing instead of one stat per video
            paths = {r.video_id: self._feature_path(r.video_id) for r in self.records}
            missing = [(vid, path) for vid, path in paths.items() if os.path.basename(path) not in present]
        if missing:
            vid, where = missing[0]
            raise FileNotFoundError(
                f"{type(self).__name__}: {len(missing)} of {len(self.records)} videos of split {self.split} have no "
                f"features; e.g. video '{vid}': expected {where} (check feat_folder, file_prefix, feature_type, "
                f"file_ext, or add the ids to dataset.ignore_videos)"
            )

    # ---------------------------------------------------------------------------------------
    # loading one video

    def _feature_path(self, video_id: str) -> str:
        return featio.feature_path(self.feat_folder, video_id, self.file_prefix, self.feature_type, self.file_ext)

    def load_features(self, video_id: str) -> Tensor:
        """Stored features of one video as float32 [C, T_raw] (no downsampling / resizing)."""
        if featio.is_single_file_store(self.feat_folder):
            return featio.load_h5_features(self.feat_folder, featio.h5_key(video_id, self.file_prefix), self.input_dim)
        return featio.load_feature_file(self._feature_path(video_id), self.input_dim)

    def _feature_grid(self, feats: Tensor) -> tuple[Tensor, float, float]:
        return feature_grid(feats, self.feat_sampling, self.feat_stride, self.num_frames,
                            self.downsample_rate, self.max_seq_len)

    def _grid_targets(self, rec: VideoRecord, num_feats: int, feat_stride: float,
                      num_frames: float) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Segments in grid units [N, 2] float32 and labels [N] int64 (or None, None)."""
        if rec.segments is None:
            return None, None
        segments = seconds_to_grid(torch.from_numpy(rec.segments), rec.fps, feat_stride, num_frames).float()  # [N, 2]
        labels = torch.from_numpy(rec.labels)  # [N]
        if self.is_training and self.clip_to_features:
            vid_len = num_feats + 0.5 * num_frames / feat_stride  # features + feat_offset
            segments, labels = clip_to_length(segments, labels, vid_len, self.trunc_thresh)
            if segments is None:
                logger.debug("video '%s': no segment left inside the features", rec.video_id)
        return segments, labels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> VideoSample:
        """Load, sample and convert one video.

        Returns:
            VideoSample with feats [C, T] float32 and segments [N, 2] float32 on the feature grid
            (labels [N] int64), or segments/labels None when the video has no usable GT. In
            training, T <= max_seq_len after the random crop.
        """
        rec = self.records[idx]
        feats, feat_stride, num_frames = self._feature_grid(self.load_features(rec.video_id))  # [C, T]
        segments, labels = self._grid_targets(rec, feats.shape[-1], feat_stride, num_frames)
        sample = VideoSample(video_id=rec.video_id, feats=feats, segments=segments, labels=labels,
                             fps=rec.fps, duration=rec.duration, feat_stride=feat_stride, feat_num_frames=num_frames)
        if self.is_training and segments is not None:
            sample = truncate_feats(sample, self.max_seq_len, self.trunc_thresh, self.crop_ratio)
        return sample

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(json_file={self.json_file!r}, split={self.split}, videos={len(self)}, "
                f"feat_sampling={self.feat_sampling!r}, is_training={self.is_training})")
