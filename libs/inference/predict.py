"""Run the detector: batches in, pre-NMS candidates on the CPU out.

    raw = collect_raw(model, loader, id_to_name=..., config=cfg)   # a whole split
    grid = predict_batch(model, batch, device)                     # one batch (tools/infer.py)

`predict_batch` is the one place where the model's output leaves the accelerator: everything
after it (post-processing, fusion, evaluation, result files) runs on the CPU. NMS is cheap there
because the model already keeps only its per-level top-k candidates.
"""

from __future__ import annotations

import sys
from typing import Optional, Union

import torch
from torch import nn
from tqdm import tqdm

from libs.core.config import Config, config_to_dict
from libs.core.structures import Batch, Detections
from libs.inference.raw import RawPredictions, VideoMeta
from libs.modeling.points import PointBufferTooShort

Device = Union[str, torch.device, None]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_batch(model: nn.Module, batch: Batch, device: Device = None) -> list[Detections]:
    """The model's pre-NMS candidates of every video of `batch`, moved to the CPU.

    The model must already be in eval mode (`collect_raw` and `tools/infer.py` set it).

    Returns:
        per video (batch order) Detections in grid units: segments [K, 2], scores [K], labels [K].
    """
    device = device or model_device(model)
    try:
        raw = model(batch.to(device))  # list[Detections], grid units, on the model's device
    except PointBufferTooShort as exc:  # name the video (the model sees only tensors)
        names = ", ".join(repr(s.video_id) for s in batch.samples) or "this batch"
        raise PointBufferTooShort(f"video {names}: {exc}") from None
    return [
        Detections(d.video_id, d.segments.cpu(), d.scores.cpu(), d.labels.cpu(), d.unit)
        for d in raw
    ]


def _progress(loader, desc: str):
    """A tqdm bar on interactive terminals only (log files and CI get the log lines); under
    torchrun only rank 0 evaluates."""
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())


def collect_raw(
    model: nn.Module,
    loader,
    *,
    id_to_name: dict[int, str],
    config: Optional[Config] = None,
    device: Device = None,
) -> RawPredictions:
    """Run `model` in eval mode over `loader` (its train/eval mode is put back afterwards).

    Args:
        model: the detector (the EMA weights: eval.py loads them, training passes `ema.module`).
        loader: evaluation loader yielding `Batch` objects.
        id_to_name: label id -> class name, stored so that a saved file is self-describing.
        config: the run's config, stored for provenance and `RawPredictions.model_side_drift`.
    Returns:
        RawPredictions in loader order, on the CPU.
    """
    was_training = model.training
    model.eval()
    detections: list[Detections] = []
    videos: list[VideoMeta] = []
    try:
        for batch in _progress(loader, "eval"):
            detections.extend(predict_batch(model, batch, device))
            videos.extend(VideoMeta.from_sample(s) for s in batch.samples)
    finally:
        model.train(was_training)
    cfg_dict = config_to_dict(config) if config is not None else {}
    return RawPredictions(detections, videos, dict(id_to_name), cfg_dict)
