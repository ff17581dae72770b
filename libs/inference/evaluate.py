"""Raw predictions -> detections in seconds -> mAP and result files.

    result = evaluate(model, loader, cfg, id_to_name=..., results_path=..., metrics_path=...)
    detections, result = score(raw, cfg)            # tools/rescore.py, validation in training

`score` is the only place that post-processes and evaluates: eval.py (through `evaluate`), the
validation inside training and tools/rescore.py all call it, so their numbers agree bit for bit.
The evaluation set-up comes from the config: `cfg.test` (post-processing), `cfg.eval` (protocol:
duplicates, blocked / excluded videos), `cfg.dataset.json_file`, `val_split`, `tiou_thresholds`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Optional, Union

from torch import nn

from libs.core.config import Config
from libs.core.structures import Detections
from libs.evaluation import EvalResult, build_evaluator, describe_protocol, detections_to_results
from libs.evaluation.protocol import ProtocolEvaluator
from libs.inference.predict import Device, collect_raw
from libs.inference.raw import RawPredictions
from libs.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def build_val_evaluator(cfg: Config) -> ProtocolEvaluator:
    """The evaluator of `cfg.dataset`'s val split under `cfg.eval` (reads the ground truth)."""
    return build_evaluator(
        cfg.eval, cfg.dataset.json_file, cfg.dataset.val_split, cfg.dataset.tiou_thresholds
    )


def score(
    raw: RawPredictions,
    cfg: Config,
    epoch: Optional[int] = None,
    evaluator: Optional[ProtocolEvaluator] = None,
) -> tuple[list[Detections], EvalResult]:
    """Post-process `raw` with `cfg.test` and evaluate it on `cfg.dataset`'s val split.

    Args:
        epoch: 1-based training epoch the predictions come from, recorded in the protocol.
        evaluator: `build_val_evaluator(cfg)` built once by a caller that scores repeatedly
            (validation in training); default: built here.
    Returns:
        (detections in seconds, one per video in `raw`'s order; the evaluator's EvalResult).
    """
    tic = time.time()
    for line in raw.model_side_drift(cfg.test):
        logger.warning("%s: %s; it acts inside the model and is NOT re-applied", raw.source, line)
    detections = raw.postprocess(cfg.test)
    evaluator = evaluator if evaluator is not None else build_val_evaluator(cfg)
    result = evaluator.evaluate(detections)
    if epoch is not None:
        result.protocol["epoch"] = epoch
    per_tiou = " ".join(f"{t:.2f}:{m:.4f}" for t, m in zip(result.tiou, result.mAP))
    logger.info(
        "post-processed and evaluated %d videos in %.1f s: average mAP %.4f (per tIoU %s); %s",
        len(detections),
        time.time() - tic,
        result.average_mAP,
        per_tiou,
        describe_protocol(result.protocol),
    )
    return detections, result


def write_eval_files(
    detections: list[Detections],
    result: EvalResult,
    id_to_name: dict[int, str],
    results_path: Optional[PathLike] = None,
    metrics_path: Optional[PathLike] = None,
) -> None:
    """The detections as an ActivityNet results JSON and `result.to_json()`, each atomically."""
    if results_path is not None:
        atomic_write_json(results_path, detections_to_results(detections, id_to_name))
        logger.info("detections written to %s", results_path)
    if metrics_path is not None:
        atomic_write_json(metrics_path, result.to_json())
        logger.info("metrics written to %s", metrics_path)


def evaluate(
    model: nn.Module,
    loader,
    cfg: Config,
    *,
    id_to_name: dict[int, str],
    results_path: Optional[PathLike] = None,
    metrics_path: Optional[PathLike] = None,
    raw_path: Optional[PathLike] = None,
    device: Device = None,
) -> EvalResult:
    """One model pass over `loader`, then `score`; optionally keep the raw candidates and files.

    Args:
        model: the detector (its EMA weights); put in eval mode for the pass.
        loader: evaluation loader of the config's val split (one video per step).
        id_to_name: label id -> class name for the results JSON and the raw file.
        results_path / metrics_path: ActivityNet results JSON / `EvalResult.to_json()`.
        raw_path: also save the pre-NMS candidates there (tools/rescore.py reads them).
    Returns:
        The evaluator's EvalResult (fractions).
    """
    tic = time.time()
    raw = collect_raw(model, loader, id_to_name=id_to_name, config=cfg, device=device)
    logger.info("model pass over %d videos in %.1f s", len(raw), time.time() - tic)
    if raw_path is not None:
        raw.save(raw_path)
    detections, result = score(raw, cfg)
    write_eval_files(detections, result, id_to_name, results_path, metrics_path)
    return result
