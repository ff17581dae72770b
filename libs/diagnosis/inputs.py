"""Ground truth and predictions of one diagnosis, parsed by the evaluator and filtered as DETAD.

Parsing, validation and their messages are the evaluator's (`libs.evaluation.DetectionMAP`):
unknown labels and non-finite scores or segments are errors, results on videos outside the split
are kept as false positives with a warning, a results file with no video of the split is an
error. On top of that, DETAD's `_import_ground_truth` drops ground truth with ``end <= start``
and, when coverage is a characteristic, with ``coverage > 1``; a class left without ground truth
is dropped with its predictions (DETAD's numbers would be NaN there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from libs.core.annotations import load_json_source
from libs.diagnosis.characteristics import Bins, bucket_index, characteristic_values
from libs.evaluation import DetectionMAP
from libs.evaluation.ground_truth import GtSource

logger = logging.getLogger(__name__)


@dataclass
class DiagnosisInputs:
    """G ground-truth rows (DETAD-filtered) over C classes and N predictions in results order."""

    class_names: list[str]  # [C]
    video_ids: list[str]  # [V] GT videos of the split
    gt_segments: np.ndarray  # [G, 2] float64 seconds
    gt_video: np.ndarray  # [G] int64 into video_ids
    gt_class: np.ndarray  # [G] int64 into class_names
    buckets: dict[str, np.ndarray]  # characteristic -> [G] int64 bucket (-1: none)
    pred_segments: np.ndarray  # [N, 2] float64
    pred_video: np.ndarray  # [N] int64 into video_ids, -1 for a video without GT
    pred_class: np.ndarray  # [N] int64
    pred_scores: np.ndarray  # [N] float64
    sources: dict[str, str] = field(default_factory=dict)  # "gt", "results": names for messages
    dropped_gt: int = 0  # GT rows removed by DETAD's filter

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_gt(self) -> np.ndarray:
        """[C] ground-truth count per class."""
        return np.bincount(self.gt_class, minlength=self.num_classes)

    @property
    def average_num_instance_per_class(self) -> float:
        """DETAD's normaliser: ground-truth rows / classes."""
        return len(self.gt_class) / self.num_classes


class _DropKeptWarning(logging.Filter):
    """Silence the evaluator's 'annotations with end <= start kept' warning: we drop them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "with end <= start kept" not in str(record.msg)


def _evaluator(
    gt: GtSource, split: Any, blocked: Iterable[str], label_names: Optional[Mapping[int, str]]
) -> DetectionMAP:
    gt_logger = logging.getLogger("libs.evaluation.ground_truth")
    quiet = _DropKeptWarning()
    gt_logger.addFilter(quiet)
    try:
        return DetectionMAP(gt, split, [0.5], blocked_videos=blocked, label_names=label_names)
    finally:
        gt_logger.removeFilter(quiet)


def _database(gt: GtSource) -> Mapping[str, Any]:
    """The ``database`` of a ground truth the evaluator has already read and validated (the
    evaluator keeps only its split's flat arrays; the characteristics need the annotations)."""
    return load_json_source(gt, "ground truth")[0]["database"]


def _keep_mask(ev: DetectionMAP, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """[G] bool: DETAD's ground-truth filter (length > 0, coverage <= 1 if it is binned)."""
    segs = ev.gt.segments
    keep = segs[:, 0] < segs[:, 1]
    if "coverage" in values:
        keep &= ~(values["coverage"] > 1.0)
    if (~keep).any():
        logger.warning(
            "ground truth %s: %d annotations dropped as DETAD does (end <= start, or coverage > 1)",
            ev.gt.source, int((~keep).sum()),
        )  # fmt: skip
    return keep


def load_inputs(
    gt: GtSource,
    results: Union[str, Mapping[str, Any], Sequence[Any]],
    split: Union[str, Sequence[str]],
    bins: Bins,
    *,
    blocked_videos: Iterable[str] = (),
    label_names: Optional[Mapping[int, str]] = None,
) -> DiagnosisInputs:
    """Parse and filter the inputs of a diagnosis.

    Args:
        gt: annotation JSON path (or loaded dict), ActivityNet format, optionally with DETAD's
            characteristic fields per annotation.
        results: results JSON path or dict ``{"results": {video: [{label, segment, score}]}}``,
            or a list of `Detections` (as `DetectionMAP.evaluate` accepts).
        split: subset name(s), case-insensitive.
        bins: characteristic → (edges, labels), see `characteristics.protocol_bins`.
        blocked_videos: video ids removed from GT and predictions.
        label_names: label id -> class name for integer labels (`DetectionMAP`'s argument).
    """
    ev = _evaluator(gt, split, blocked_videos, label_names)
    values = characteristic_values(_database(gt), ev.gt.video_ids, list(bins), ev.gt.source)
    if any(len(v) != len(ev.gt.segments) for v in values.values()):  # rows must line up
        raise RuntimeError("characteristics and ground-truth rows are not aligned")
    preds = ev.parse(results)
    ev._check_videos(preds)  # the evaluator's own warning / error for videos outside the split
    keep = _keep_mask(ev, values)
    gt_class = ev.gt.class_idx[keep]
    # classes left without GT are dropped (remap the rest, order kept)
    present = np.bincount(gt_class, minlength=ev.gt.num_classes) > 0  # [C0]
    if not present.any():
        raise ValueError(f"ground truth {ev.gt.source}: no annotation left after DETAD's filter")
    if not present.all():
        gone = [n for n, p in zip(ev.gt.class_names, present) if not p]
        logger.warning("classes without ground truth after DETAD's filter dropped: %s", gone)
    new_index = np.cumsum(present) - 1  # [C0]
    pred_keep = present[preds.labels]  # [N]
    return DiagnosisInputs(
        class_names=[n for n, p in zip(ev.gt.class_names, present) if p],
        video_ids=list(ev.gt.video_ids),
        gt_segments=ev.gt.segments[keep],
        gt_video=ev.gt.video_idx[keep],
        gt_class=new_index[gt_class],
        buckets={k: bucket_index(v[keep], bins[k][0]) for k, v in values.items()},
        pred_segments=preds.segments[pred_keep],
        pred_video=ev.gt_video_index(preds)[pred_keep],
        pred_class=new_index[preds.labels[pred_keep]],
        pred_scores=preds.scores[pred_keep],
        sources={"gt": ev.gt.source, "results": preds.source},
        dropped_gt=int((~keep).sum()),
    )
