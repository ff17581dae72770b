"""`diagnose` (numbers) and `run_diagnosis` (numbers + figures + HTML report in a folder)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from libs.diagnosis.characteristics import PROTOCOLS, Bins, protocol_bins
from libs.diagnosis.false_negative import false_negative_analysis
from libs.diagnosis.false_positive import false_positive_analysis
from libs.diagnosis.inputs import DiagnosisInputs, load_inputs
from libs.diagnosis.runs import Run, evaluate_run
from libs.diagnosis.report import render_report
from libs.diagnosis.sensitivity import sensitivity_analysis
from libs.evaluation.ground_truth import GtSource
from libs.evaluation.matching import interpolated_ap
from libs.utils.io import atomic_write_json, atomic_write_text
from libs.utils.paths import check_output_dir, check_outputs, refuse_symlink

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
    label_names: Optional[Mapping[int, str]] = None,
) -> dict:
    """DETAD's three analyses; returns the ``diagnosis.json`` dict (fractions, None = empty).

    Args:
        gt: annotation JSON (path or dict), optionally DETAD-augmented with characteristics.
        results: results JSON (path or dict) or a list of `Detections` (unit "sec").
        split: subset name(s), case-insensitive.
        protocol: 'thumos14' (tIoU 0.5) or 'activitynet' (0.5:0.05:0.95), with DETAD's bins.
        tiou_thresholds, bins: override the protocol's (bins: name -> (edges, labels)).
        limit_factor: predictions kept per class for the false-positive analysis, x N_c.
        min_tiou_thr: below it an unmatched prediction is a Background error.
        blocked_videos: removed from ground truth and predictions.
        label_names: label id -> class name for integer labels (as `DetectionMAP`).
    """
    start, blocked = time.perf_counter(), list(blocked_videos)
    thresholds = _thresholds(protocol, tiou_thresholds)
    if int(limit_factor) < 1 or not 0 <= float(min_tiou_thr) <= 1:
        raise ValueError(f"limit_factor must be >= 1 and min_tiou_thr in [0, 1], got "
                         f"{limit_factor!r}, {min_tiou_thr!r}")  # fmt: skip
    char_bins: Bins = protocol_bins(protocol, bins)
    inp = load_inputs(gt, results, split, char_bins, blocked_videos=blocked,
                      label_names=label_names)  # fmt: skip
    if len(inp.pred_scores) == 0:  # the evaluator's semantics: every AP is 0
        logger.warning("%s: no predictions; every AP is 0", inp.sources["results"])
    fp = false_positive_analysis(inp, thresholds, int(limit_factor), float(min_tiou_thr))
    run_all = evaluate_run(inp, np.arange(len(inp.pred_scores)), thresholds, 0.0)
    fn = false_negative_analysis(inp, run_all, char_bins)
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
            "bins": _bins_record(char_bins),
            "blocked_videos": blocked,
        },
        "counts": _counts(inp),
        "sources": dict(inp.sources),
        "seconds": time.perf_counter() - start,
    }


def _bins_record(bins: Bins) -> dict:
    """Bins as strict JSON (an infinite edge as "inf")."""
    return {
        name: {"edges": [float(x) if np.isfinite(x) else "inf" for x in edges], "labels": labels}
        for name, (edges, labels) in bins.items()
    }


def _counts(inp: DiagnosisInputs) -> dict:
    return {
        "ground_truth": int(len(inp.gt_class)),
        "ground_truth_dropped": inp.dropped_gt,
        "predictions": int(len(inp.pred_scores)),
        "classes": inp.num_classes,
        "average_num_instance_per_class": inp.average_num_instance_per_class,
    }


def _config_record(config: Any) -> Any:
    """A run's config as JSON-ready data: a dataclass (our Config), a mapping or YAML text."""
    if config is None or isinstance(config, (str, Mapping)):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    raise ValueError(f"config must be a Config, a mapping or text, got {type(config).__name__}")


REPORT_FILES = ("diagnosis.json", "report.html")  # written into the output folder, with FIGURES


def check_diagnosis_dir(out_dir: Union[str, os.PathLike], flag: str, inputs: Iterable, *,
                        figures: bool = True, others: Iterable = ()) -> None:
    """Before any work: `out_dir` is a folder (or new), not a symbolic link, and none of the files
    the diagnosis writes there is an input of the command or one of its `others` outputs.

    Args:
        flag: how errors name the folder (`--out`, `--diagnose`).
        inputs, others: (option name, path) pairs, as `libs.utils.paths.check_outputs` takes them.
    """
    out = os.path.normpath(os.fspath(out_dir))  # "diag/" -> "diag": a link is seen as a link
    refuse_symlink(out, flag)
    check_output_dir(out_dir, flag, "for diagnosis.json, the PNGs and report.html")
    names = list(REPORT_FILES)
    if figures:
        from libs.diagnosis.figures import FIGURES

        names += FIGURES.values()
    check_outputs(inputs, [*others, *((flag, os.path.join(out, name)) for name in names)])


def run_diagnosis(
    gt: GtSource,
    results: Union[str, Mapping[str, Any], Sequence[Any]],
    split: Union[str, Sequence[str]],
    out_dir: Union[str, os.PathLike],
    protocol: str = "thumos14",
    *,
    config: Any = None,
    figures: bool = True,
    **options: Any,
) -> dict:
    """`diagnose`, then write ``out_dir``/diagnosis.json, the three PNGs and report.html.

    Args:
        gt, results, split, protocol, options: as `diagnose` (tiou_thresholds, bins,
            limit_factor, min_tiou_thr, blocked_videos).
        out_dir: created if needed.
        config: the run's config (our `Config`, a mapping or YAML text), recorded under
            "config" and shown in the report; None if not known.
        figures: draw the PNGs (needs matplotlib, the [viz] extra).
    Returns:
        The diagnosis dict, with "files": {name: path} of what was written.
    """
    if figures:
        from libs.diagnosis.figures import _figure

        _figure((1, 1))  # fail on a missing matplotlib before any work
    out = os.fspath(out_dir)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output folder {out}: {e.strerror or e}") from None
    d = diagnose(gt, results, split, protocol, **options)
    d["config"] = _config_record(config)
    pngs: dict[str, str] = {}
    if figures:
        from libs.diagnosis.figures import write_figures

        pngs = write_figures(d, out)
    files = {"diagnosis": os.path.join(out, "diagnosis.json"), **pngs,
             "report": os.path.join(out, "report.html")}  # fmt: skip
    d["files"] = files
    atomic_write_json(files["diagnosis"], d)
    atomic_write_text(files["report"], render_report(d, pngs, d["config"]))
    logger.info("diagnosis written to %s", out)
    return d
