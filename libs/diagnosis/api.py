"""`diagnose` (numbers) and `run_diagnosis` (numbers + figures + HTML report in a folder)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from libs.diagnosis.characteristics import PROTOCOLS, Bins, protocol_bins
from libs.diagnosis.false_negative import false_negative_analysis
from libs.diagnosis.false_positive import false_positive_analysis
from libs.diagnosis.inputs import DiagnosisInputs, load_inputs
from libs.diagnosis.runs import Run, evaluate_run
from libs.diagnosis.sensitivity import sensitivity_analysis
from libs.evaluation.ground_truth import GtSource
from libs.evaluation.matching import interpolated_ap

logger = logging.getLogger(__name__)


def _thresholds(protocol: str, tiou_thresholds: Optional[Iterable[float]]) -> np.ndarray:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}'; available: {sorted(PROTOCOLS)}")
    values = PROTOCOLS[protocol]["tiou_thresholds"] if tiou_thresholds is None else tiou_thresholds
    t = np.asarray(list(values), dtype=np.float64).reshape(-1)  # [T]
    if t.size == 0 or not np.isfinite(t).all() or (t <= 0).any() or (t > 1).any():
        raise ValueError(f"tIoU thresholds must be numbers in (0, 1], got {list(values)}")
    return t


def per_class_table(inp: DiagnosisInputs, run: Run) -> list[dict]:
    """Per class: GT and prediction counts, AP_N (DETAD) and plain AP (the evaluator's
    interpolation on the same matches), each averaged over the thresholds."""
    rows = []
    for c, ranked in enumerate(run.rankings):
        tp = run.matched[:, ranked] >= 0  # [T, n_c]
        ap = interpolated_ap(tp, int(inp.num_gt[c])) if len(ranked) else np.zeros(len(tp))
        rows.append(
            {
                "class": inp.class_names[c],
                "num_gt": int(inp.num_gt[c]),
                "num_predictions": int(len(ranked)),
                "AP_N": float(run.ap[:, c].mean()),
                "AP": float(ap.mean()),
            }
        )
    return rows


def diagnose(
    gt: GtSource,
    results: Union[str, Mapping[str, Any], Sequence[Any]],
    split: Union[str, Sequence[str]],
    protocol: str = "thumos14",
    *,
    tiou_thresholds: Optional[Iterable[float]] = None,
    bins: Optional[Mapping[str, tuple]] = None,
    limit_factor: int = 10,
    min_tiou_thr: float = 0.1,
    blocked_videos: Iterable[str] = (),
) -> dict:
    """DETAD's three analyses; returns the ``diagnosis.json`` dict (fractions, None = empty).

    Args:
        gt: annotation JSON (path or dict), optionally DETAD-augmented with characteristics.
        results: results JSON (path or dict) or a list of `Detections` (unit "sec").
        split: subset name(s), case-insensitive.
        protocol: 'thumos14' (tIoU 0.5) or 'activitynet' (0.5:0.05:0.95), with DETAD's bins.
        tiou_thresholds, bins: override the protocol's (bins: name -> (edges, labels),
            added to / replacing the protocol's characteristics).
        limit_factor: predictions kept per class for the false-positive analysis, x N_c.
        min_tiou_thr: below it an unmatched prediction is a Background error.
        blocked_videos: removed from ground truth and predictions.
    """
    start = time.perf_counter()
    thresholds = _thresholds(protocol, tiou_thresholds)
    if int(limit_factor) < 1 or not 0 <= float(min_tiou_thr) <= 1:
        raise ValueError(f"limit_factor must be >= 1 and min_tiou_thr in [0, 1], got "
                         f"{limit_factor!r}, {min_tiou_thr!r}")  # fmt: skip
    char_bins: Bins = protocol_bins(protocol, bins)
    inp = load_inputs(gt, results, split, char_bins, blocked_videos=blocked_videos)
    if len(inp.pred_scores) == 0:
        logger.warning("%s: no predictions; every AP is 0", inp.sources["results"])
    fp, _, _ = false_positive_analysis(inp, thresholds, int(limit_factor), float(min_tiou_thr))
    fn, _ = false_negative_analysis(inp, thresholds, char_bins)
    run_all = evaluate_run(inp, np.arange(len(inp.pred_scores)), thresholds, 0.0)
    table = per_class_table(inp, run_all)
    return {
        "tiou_thresholds": thresholds.tolist(),
        "false_positive": fp,
        "false_negative": fn,
        "sensitivity": sensitivity_analysis(inp, run_all, char_bins),
        "average_mAP": float(np.mean([r["AP"] for r in table])) if table else 0.0,
        "per_class": table,
        "settings": {
            "protocol": protocol,
            "split": [split] if isinstance(split, str) else list(split),
            "limit_factor": int(limit_factor),
            "min_tiou_thr": float(min_tiou_thr),
            "bins": {k: {"edges": [float(x) if np.isfinite(x) else "inf" for x in e],
                         "labels": lab}
                     for k, (e, lab) in char_bins.items()},  # fmt: skip
            "blocked_videos": list(blocked_videos),
        },
        "counts": {
            "ground_truth": int(len(inp.gt_class)),
            "ground_truth_dropped": inp.dropped_gt,
            "predictions": int(len(inp.pred_scores)),
            "classes": inp.num_classes,
            "average_num_instance_per_class": inp.average_num_instance_per_class,
        },
        "sources": dict(inp.sources),
        "seconds": time.perf_counter() - start,
    }
