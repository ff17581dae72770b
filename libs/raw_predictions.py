"""Raw (pre-NMS) predictions on disk: run the model once, re-tune post-processing many times.

    raw = collect_raw_predictions(model, loader, id_to_name=dataset.id_to_name, config=cfg)
    raw.save("raw.pt")                                  # eval.py --save-raw raw.pt
    raw = RawPredictions.load("raw.pt")                 # tools/rescore.py, no model, no GPU
    result = evaluate_raw(raw, cfg)                     # NMS / soft-NMS / voting + mAP

This is the house-style §2.2 boundary made persistent: the model's per-video candidates
(`Detections`, unit "grid") plus the per-video metadata `postprocess` reads (fps, feat_stride,
feat_num_frames, duration). `evaluate_raw` runs exactly the post-processing and evaluation of
`libs.engine.train_loop.evaluate`, so the numbers match eval.py bit for bit.

File layout (`torch.save` of tensors and plain containers only, so `weights_only=True` loads it):

    {"format": "raw_predictions", "version": 1,
     "videos": [{"video_id": str, "segments": [K, 2] float32 (grid), "scores": [K] float32,
                 "labels": [K] int64, "fps": float, "feat_stride": float,
                 "feat_num_frames": float, "duration": float, "num_feats": int}, ...],
     "id_to_name": {label_id: class name},
     "config": the resolved config of the run (plain dict)}

Knobs applied inside the model (`test.pre_nms_thresh`, `test.pre_nms_topk`,
`test.duration_thresh`) are baked into the file; changing them needs a new eval.py run.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from libs.core.config import Config, TestCfg, config_to_dict
from libs.core.structures import Detections, VideoSample
from libs.evaluation import EvalResult, build_evaluator, detections_to_results
from libs.postprocessing import postprocess
from libs.utils.io import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

FORMAT, VERSION = "raw_predictions", 1
# test-config knobs the model applies before its candidates are saved; rescoring cannot redo them
MODEL_SIDE_KEYS = ("pre_nms_thresh", "pre_nms_topk", "duration_thresh")
_META_FLOATS = ("fps", "feat_stride", "feat_num_frames", "duration")


@dataclass(frozen=True)
class VideoMeta:
    """The metadata of a `VideoSample` that `postprocess` reads (it never touches the features)."""

    video_id: str
    fps: float
    duration: float  # seconds
    feat_stride: float  # frames between consecutive features (after downsampling)
    feat_num_frames: float  # frames covered by one feature
    num_feats: int  # T of the (downsampled / resized) feature grid

    @staticmethod
    def from_sample(sample: VideoSample) -> "VideoMeta":
        return VideoMeta(
            sample.video_id,
            float(sample.fps),
            float(sample.duration),
            float(sample.feat_stride),
            float(sample.feat_num_frames),
            int(sample.num_feats),
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
                "segments": det.segments.detach().cpu().float().reshape(-1, 2),  # [K, 2]
                "scores": det.scores.detach().cpu().float().reshape(-1),  # [K]
                "labels": det.labels.detach().cpu().long().reshape(-1),  # [K]
                "num_feats": meta.num_feats,
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
        parsed = [_parse_video(v, i, str(path)) for i, v in enumerate(data["videos"])]
        return RawPredictions(
            [d for d, _ in parsed],
            [m for _, m in parsed],
            dict(data.get("id_to_name") or {}),
            dict(data.get("config") or {}),
            str(path),
        )

    def postprocess(self, cfg: TestCfg) -> list[Detections]:
        """`libs.postprocessing.postprocess` of every video: Detections in seconds, same order."""
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
    for key in ("segments", "scores", "labels"):
        if not isinstance(entry.get(key), torch.Tensor):
            raise ValueError(f"{where}: '{key}' must be a tensor")
    for key in (*_META_FLOATS, "num_feats"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{where}: '{key}' must be a positive number, got {value!r}")
    det = Detections(
        entry["video_id"],
        entry["segments"].float().reshape(-1, 2),
        entry["scores"].float(),
        entry["labels"].long(),
        unit="grid",
    )
    meta = VideoMeta(
        entry["video_id"],
        *(float(entry[k]) for k in ("fps", "duration", "feat_stride", "feat_num_frames")),
        int(entry["num_feats"]),
    )
    return det, meta


@torch.no_grad()
def collect_raw_predictions(
    model: nn.Module,
    loader,
    *,
    id_to_name: dict[int, str],
    config: Optional[Config] = None,
    device: Union[str, torch.device, None] = None,
) -> RawPredictions:
    """Run `model` (eval mode) over `loader` and keep its pre-NMS candidates, moved to CPU.

    Args:
        model: the detector (e.g. the EMA weights loaded by eval.py).
        loader: evaluation loader yielding `Batch` objects.
        id_to_name: label id -> class name, stored so the file is self-describing.
        config: the run's config, stored for provenance and `model_side_drift`.
    Returns:
        RawPredictions in loader order.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    detections: list[Detections] = []
    videos: list[VideoMeta] = []
    try:
        for batch in loader:
            for det in model(batch.to(device)):  # list[Detections], grid units, pre-NMS
                detections.append(
                    Detections(
                        det.video_id,
                        det.segments.cpu(),
                        det.scores.cpu(),
                        det.labels.cpu(),
                        det.unit,
                    )
                )
            videos.extend(VideoMeta.from_sample(s) for s in batch.samples)
    finally:
        model.train(was_training)
    cfg_dict = config_to_dict(config) if config is not None else {}
    return RawPredictions(detections, videos, dict(id_to_name), cfg_dict)


def evaluate_raw(
    raw: RawPredictions,
    cfg: Config,
    results_path: Optional[Union[str, Path]] = None,
    metrics_path: Optional[Union[str, Path]] = None,
    id_to_name: Optional[dict[int, str]] = None,
) -> EvalResult:
    """Post-process `raw` with `cfg.test` and compute the mAP on `cfg.dataset`'s val split.

    The same steps as `libs.engine.train_loop.evaluate` after the model: postprocess, then
    `build_evaluator(cfg.eval, json_file, val_split, tiou_thresholds)` (the `eval:` protocol),
    then the optional result files.

    Args:
        id_to_name: class names for `results_path`; default the names stored in `raw`.
    Returns:
        The evaluator's EvalResult (fractions).
    """
    tic = time.time()
    for line in raw.model_side_drift(cfg.test):
        logger.warning("%s: %s; it acts inside the model and is NOT re-applied", raw.source, line)
    detections = raw.postprocess(cfg.test)
    evaluator = build_evaluator(
        cfg.eval, cfg.dataset.json_file, cfg.dataset.val_split, cfg.dataset.tiou_thresholds
    )
    result = evaluator.evaluate(detections)
    logger.info(
        "post-processed and evaluated %d videos in %.1f s: average mAP %.4f",
        len(detections),
        time.time() - tic,
        result.average_mAP,
    )
    if results_path is not None:
        names = id_to_name if id_to_name is not None else raw.id_to_name
        atomic_write_json(results_path, detections_to_results(detections, names))
        logger.info("detections written to %s", results_path)
    if metrics_path is not None:
        atomic_write_json(metrics_path, result.to_json())
        logger.info("metrics written to %s", metrics_path)
    return result


def evaluate_and_save_raw(
    model: nn.Module,
    loader,
    dataset,
    cfg: Config,
    raw_path: Union[str, Path],
    results_path: Optional[Union[str, Path]] = None,
    metrics_path: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device, None] = None,
) -> EvalResult:
    """eval.py --save-raw: one model pass, the candidates saved to `raw_path`, then `evaluate_raw`.

    Gives the numbers of `libs.engine.train_loop.evaluate` (same model pass, same
    post-processing, same evaluator), and the saved file reproduces them in tools/rescore.py.
    """
    raw = collect_raw_predictions(
        model, loader, id_to_name=dataset.id_to_name, config=cfg, device=device
    )
    raw.save(raw_path)
    return evaluate_raw(raw, cfg, results_path, metrics_path, id_to_name=dataset.id_to_name)
