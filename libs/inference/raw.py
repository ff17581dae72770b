"""Raw (pre-NMS) predictions: the model's per-video candidates, in memory and on disk.

    raw = collect_raw(model, loader, id_to_name=dataset.id_to_name, config=cfg)  # predict.py
    raw.save("raw.pt")                                  # eval.py --save-raw raw.pt
    raw = RawPredictions.load("raw.pt")                 # tools/rescore.py, no model, no GPU
    detections, result = score(raw, cfg)                # evaluate.py: NMS ... + mAP

This is the house-style §2.2 boundary made persistent: the model's per-video candidates
(`Detections`, unit "grid") plus the per-video metadata `postprocess` reads (fps, feat_stride,
feat_num_frames, duration). Every evaluation (eval.py, validation during training, rescoring)
goes through a `RawPredictions`, so a saved file reproduces eval.py's numbers bit for bit.

File layout (`torch.save` of tensors and plain containers only, so `weights_only=True` loads it):

    {"format": "raw_predictions", "version": 1,
     "videos": [{"video_id": str, "segments": [K, 2] float32 (grid), "scores": [K] float32,
                 "labels": [K] int64, "fps": float, "feat_stride": float,
                 "feat_num_frames": float, "duration": float}, ...],
     "id_to_name": {label_id: class name},
     "config": the resolved config of the run (plain dict)}

Knobs applied inside the model (`test.pre_nms_thresh`, `test.pre_nms_topk`,
`test.duration_thresh`) are baked into the file; changing them needs a new eval.py run.
Older files whose videos also hold a "num_feats" field load too (the field is ignored).
`load` refuses a video listed twice, and a video with more candidates than the model that wrote
the file can make (`candidate_bound`: test.pre_nms_topk per pyramid level of the stored config,
else MAX_CANDIDATES_PER_VIDEO): a hand-made file with 2 M candidates in one video kept soft-NMS
busy for minutes (143 s on 2 shared cores) before this check.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch

from libs.core.config import TestCfg
from libs.core.structures import Detections, VideoSample
from libs.inference.postprocess import postprocess
from libs.utils.io import atomic_write

logger = logging.getLogger(__name__)

FORMAT, VERSION = "raw_predictions", 1
# test-config knobs the model applies before its candidates are saved; rescoring cannot redo them
MODEL_SIDE_KEYS = ("pre_nms_thresh", "pre_nms_topk", "duration_thresh")
_META_FLOATS = ("fps", "feat_stride", "feat_num_frames", "duration")
# candidates per video when the file's config does not say how many the model can make (its
# bound is test.pre_nms_topk per pyramid level: 2000 x 5-8 levels in the shipped configs)
MAX_CANDIDATES_PER_VIDEO = 100_000


@dataclass(frozen=True)
class VideoMeta:
    """The metadata of a `VideoSample` that `postprocess` reads (it never touches the features)."""

    video_id: str
    fps: float
    duration: float  # seconds
    feat_stride: float  # frames between consecutive features (after downsampling)
    feat_num_frames: float  # frames covered by one feature

    @staticmethod
    def from_sample(sample: VideoSample) -> "VideoMeta":
        return VideoMeta(
            sample.video_id,
            float(sample.fps),
            float(sample.duration),
            float(sample.feat_stride),
            float(sample.feat_num_frames),
        )


@dataclass
class RawPredictions:
    """Pre-NMS candidates of every video of a split, with what is needed to finish the job."""

    detections: list[Detections]  # per video, unit "grid", on CPU
    videos: list[VideoMeta]  # same order as `detections`
    id_to_name: dict[int, str] = field(default_factory=dict)  # label id -> class name
    config: dict = field(default_factory=dict)  # config_to_dict of the run that made them
    source: str = "<raw predictions>"  # file path, for messages

    def __post_init__(self):
        seen: set = set()
        for meta in self.videos:
            if meta.video_id in seen:
                raise ValueError(f"{self.source}: video '{meta.video_id}' appears twice; each video "
                                 "may have one entry (two runs merged into one file?)")
            seen.add(meta.video_id)
        if len(self.detections) != len(self.videos):
            raise ValueError(
                f"{self.source}: {len(self.detections)} detections for {len(self.videos)} videos"
            )
        for det, meta in zip(self.detections, self.videos):
            if det.video_id != meta.video_id or det.unit != "grid":
                raise ValueError(
                    f"{self.source}: detections of '{det.video_id}' (unit {det.unit!r}) paired "
                    f"with metadata of '{meta.video_id}'; expected the same video, unit 'grid'"
                )

    def __len__(self) -> int:
        return len(self.videos)

    def to_dict(self) -> dict[str, Any]:
        """The plain, weights_only-loadable dict described in the module docstring."""
        videos = []
        for det, meta in zip(self.detections, self.videos):
            entry: dict[str, Any] = {
                "video_id": meta.video_id,
                "segments": det.segments.detach().float().reshape(-1, 2),  # [K, 2]
                "scores": det.scores.detach().float().reshape(-1),  # [K]
                "labels": det.labels.detach().long().reshape(-1),  # [K]
            }
            entry.update({key: float(getattr(meta, key)) for key in _META_FLOATS})
            videos.append(entry)
        id_to_name = {int(k): str(v) for k, v in self.id_to_name.items()}
        return {
            "format": FORMAT,
            "version": VERSION,
            "videos": videos,
            "id_to_name": id_to_name,
            "config": self.config,
        }

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write atomically (the folder is created if needed)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            torch.save(self.to_dict(), f)
        num = sum(len(d) for d in self.detections)
        logger.info(
            "raw predictions of %d videos (%d candidates) written to %s", len(self), num, path
        )

    @staticmethod
    def load(path: Union[str, os.PathLike]) -> "RawPredictions":
        """Read a file written by `save` (with `weights_only=True`).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a raw-predictions file, or a field is missing / malformed (the
                message names the file, the video and the field).
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"raw predictions not found: {path}")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, pickled objects, not a torch file...
            raise ValueError(
                f"cannot read raw predictions {path}: {type(exc).__name__} (truncated or corrupt "
                "file, or not written by eval.py --save-raw)"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a raw-predictions file (written by eval.py --save-raw)"
            )
        if data.get("version") != VERSION:
            raise ValueError(
                f"{path}: raw-predictions version {data.get('version')!r}, "
                f"this code reads version {VERSION}"
            )
        if not isinstance(data.get("videos"), list):
            raise ValueError(f"{path}: 'videos' must be a list")
        for key in ("config", "id_to_name"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ValueError(f"{path}: '{key}' must be a dict (as eval.py --save-raw writes it), "
                                 f"got {type(data[key]).__name__} {data[key]!r:.60}")
        parsed = [_parse_video(v, i, str(path)) for i, v in enumerate(data["videos"])]
        config = dict(data.get("config") or {})
        _check_sizes([d for d, _ in parsed], config, str(path))
        return RawPredictions(
            [d for d, _ in parsed], [m for _, m in parsed], dict(data.get("id_to_name") or {}),
            config, str(path),
        )

    def postprocess(self, cfg: TestCfg) -> list[Detections]:
        """`libs.inference.postprocess.postprocess` of every video: Detections in seconds, same order."""
        return postprocess(self.detections, self.videos, cfg)  # VideoMeta has the fields it reads

    def model_side_drift(self, cfg: TestCfg) -> list[str]:
        """`test.*` knobs that differ from the run that made the file but cannot be re-applied."""
        saved = self.config.get("test", {})
        return [
            f"test.{key}={getattr(cfg, key)!r} (the candidates were made with {saved[key]!r})"
            for key in MODEL_SIDE_KEYS
            if key in saved and saved[key] != getattr(cfg, key)
        ]


def _parse_video(entry: Any, index: int, source: str) -> tuple[Detections, VideoMeta]:
    """One `videos` entry of the file → (Detections in grid units, VideoMeta); checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("video_id"), str):
        raise ValueError(f"{source}: videos[{index}] must be a dict with a string 'video_id'")
    where = f"{source}: video '{entry['video_id']}'"
    _check_candidates(entry, where)
    for key in _META_FLOATS:
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{where}: '{key}' must be a positive number, got {value!r}")
    det = Detections(
        entry["video_id"],
        entry["segments"].float().reshape(-1, 2),  # [K, 2]; [0] or [0, 2] when empty
        entry["scores"].float(),
        entry["labels"].long(),
        unit="grid",
    )
    meta = VideoMeta(
        entry["video_id"],
        *(float(entry[k]) for k in ("fps", "duration", "feat_stride", "feat_num_frames")),
    )
    return det, meta


def _check_candidates(entry: dict, where: str) -> None:
    """segments [K, 2] and scores [K]: finite floats; labels [K]: integers >= 0."""
    for key in ("segments", "scores", "labels"):
        if not isinstance(entry.get(key), torch.Tensor):
            raise ValueError(f"{where}: '{key}' must be a tensor")
    segments, scores, labels = entry["segments"], entry["scores"], entry["labels"]
    k = len(scores) if scores.ndim == 1 else -1  # K candidates
    segments_ok = tuple(segments.shape) == (k, 2) or (k == 0 and segments.numel() == 0)
    if k < 0 or tuple(labels.shape) != (k,) or not segments_ok:
        raise ValueError(
            f"{where}: expected segments [K, 2], scores [K] and labels [K], got segments "
            f"{list(segments.shape)}, scores {list(scores.shape)}, labels {list(labels.shape)}"
        )
    for key, tensor in (("segments", segments), ("scores", scores)):
        if not tensor.is_floating_point():
            raise ValueError(f"{where}: '{key}' must hold floating-point numbers, got {tensor.dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{where}: '{key}' holds a non-finite value (NaN or Inf)")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{where}: 'labels' must hold integer class ids, got {labels.dtype}")
    if k and int(labels.min()) < 0:
        raise ValueError(f"{where}: 'labels' holds a negative class id {int(labels.min())}")


def candidate_bound(config: dict) -> tuple[int, str]:
    """Most candidates one video can have: test.pre_nms_topk per pyramid level (model.arch[2] + 1
    levels) of the run's config, else MAX_CANDIDATES_PER_VIDEO; with the reason, for messages."""
    topk = config.get("test", {}).get("pre_nms_topk") if isinstance(config.get("test"), dict) else None
    arch = config.get("model", {}).get("arch") if isinstance(config.get("model"), dict) else None
    if isinstance(topk, int) and topk > 0 and isinstance(arch, (list, tuple)) and len(arch) == 3:
        levels = int(arch[2]) + 1
        return topk * levels, f"test.pre_nms_topk {topk} x {levels} pyramid levels"
    return MAX_CANDIDATES_PER_VIDEO, "the limit for files without a config"


def _check_sizes(dets: list[Detections], config: dict, source: str) -> None:
    """Refuse a video with more candidates than the model that wrote the file can produce:
    NMS on millions of candidates runs for many minutes (soft-NMS is quadratic in the worst case)."""
    bound, why = candidate_bound(config)
    for det in dets:
        if len(det) > bound:
            raise ValueError(
                f"{source}: video '{det.video_id}' holds {len(det):,} candidates, more than the "
                f"model can produce ({bound:,}: {why}); the file was not written by eval.py "
                "--save-raw (or was edited), and NMS on it would take very long"
            )
