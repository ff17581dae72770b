"""Temporal action detection mAP with ActivityNet's official semantics, vectorised.

`DetectionMAP(...).evaluate(...)` gives exactly the numbers of ActivityNet's official
``Evaluation/eval_detection.py`` (``ANETdetection``, check_status=False):

- classes are label *names*, indexed in order of first appearance in the split's GT;
- mAP at a tIoU is the mean AP over the classes with GT in the split, average mAP the mean
  over tIoUs;
- predictions are not filtered by split: one on a video without GT of its class (or outside
  the split) is a false positive; duplicates count separately; a class without predictions
  has AP 0;
- greedy matching and VOC-2011 interpolated AP as described in `libs.evaluation.matching`.

Differences from the official script (none changes a number it can produce):
subset names are matched case-insensitively and several may be given; the GT JSON needs only
``database`` and the results JSON only ``results``; labels may be integer ids; a prediction of
a class that has GT elsewhere in the database but not in the split is ignored (the official
code raises KeyError); blocked videos are passed in, never fetched; a results file none of
whose videos is in the split is refused as mismatched input (the official code gives 0).
``remove_duplicates=True`` switches on the ActionFormer/VMS GT clean-up (not official).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from libs.core.annotations import load_json_source
from libs.core.structures import Detections
from libs.evaluation.ground_truth import GroundTruth, GtSource, load_ground_truth
from libs.evaluation.matching import average_precision
from libs.evaluation.predictions import (
    LabelResolver,
    PredictionArrays,
    from_detections,
    from_results,
)

logger = logging.getLogger(__name__)

Predictions = Union[Sequence[Detections], Mapping[str, Any], str]


@dataclass
class EvalResult:
    """mAP of one evaluation. All values are fractions in [0, 1]."""

    tiou: list[float]  # [T] thresholds
    mAP: list[float]  # [T] mean AP over classes at each threshold
    average_mAP: float  # mean of mAP over thresholds
    ap: np.ndarray  # [T, C] AP per threshold and class
    class_names: list[str]  # [C] column names of `ap`
    protocol: Optional[dict] = None  # evaluation protocol behind the numbers (libs.evaluation.protocol)

    def to_json(self) -> dict:
        """``{"tiou": [...], "mAP": [...], "average_mAP": x}`` (plain floats, fractions), plus
        ``"protocol"`` when the result carries one."""
        out = {
            "tiou": [float(t) for t in self.tiou],
            "mAP": [float(m) for m in self.mAP],
            "average_mAP": float(self.average_mAP),
        }
        if self.protocol is not None:
            out["protocol"] = dict(self.protocol)
        return out

    def summary(self) -> dict[str, float]:
        """Flat metrics for logs: ``{"mAP@0.50": x, ..., "avg_mAP": y}`` (fractions)."""
        out = {f"mAP@{t:.2f}": float(m) for t, m in zip(self.tiou, self.mAP)}
        out["avg_mAP"] = float(self.average_mAP)
        return out


def _check_thresholds(tiou_thresholds: Iterable[float]) -> np.ndarray:
    """Any sequence (or scalar) of distinct finite numbers in [0, 1] → [T] float64."""
    try:
        values = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)  # [T]
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(
            "tiou_thresholds must be a non-empty sequence of finite numbers, "
            f"got {tiou_thresholds!r}"
        )
    for i, t in enumerate(values.tolist()):
        if not 0 <= t <= 1:  # a tIoU lies in [0, 1]: outside, every or no match is a hit
            raise ValueError(f"tiou_thresholds must lie in [0, 1], got {t!r}")
        if t in values[:i]:  # evaluated, and averaged, twice
            raise ValueError(f"tiou_thresholds has {t!r} twice; give each threshold once")
    return values


class DetectionMAP:
    """ActivityNet detection mAP over one split of an annotation JSON.

    Args:
        gt: path of an ActivityNet-style annotation JSON, or the loaded dict.
        split: subset name or names, matched case-insensitively ("test" matches "Test").
        tiou_thresholds: any sequence of thresholds, e.g. ``np.linspace(0.5, 0.95, 10)``.
        remove_duplicates: drop GT events with ``end - start <= 0`` and near-duplicates (1e-3 s,
            same label) as ActionFormer/VMS do. Default False (official).
        blocked_videos: video ids removed from GT and predictions (official semantics).
        label_names: label id → class name for integer prediction labels. Default: the GT's
            ``label_id`` → ``label`` map; if the GT has no ``label_id``, an integer label is the
            index into this split's class order (``class_names``).
    """

    def __init__(
        self,
        gt: GtSource,
        split: Union[str, Sequence[str]],
        tiou_thresholds: Iterable[float],
        *,
        remove_duplicates: bool = False,
        blocked_videos: Iterable[str] = (),
        label_names: Optional[Mapping[int, str]] = None,
    ):
        self.thresholds = _check_thresholds(tiou_thresholds)  # [T]
        self.blocked = set(blocked_videos)
        self.gt: GroundTruth = load_ground_truth(
            gt, split, remove_duplicates=remove_duplicates, blocked_videos=self.blocked
        )
        self.resolver = LabelResolver(self.gt, label_names)
        self._video_index = {vid: i for i, vid in enumerate(self.gt.video_ids)}
        logger.info(
            "DetectionMAP: %s split %s: %d videos, %d GT segments, %d classes",
            self.gt.source,
            list(self.gt.split),
            len(self.gt.video_ids),
            len(self.gt.segments),
            self.gt.num_classes,
        )

    @property
    def class_names(self) -> list[str]:
        return list(self.gt.class_names)

    def parse(self, predictions: Predictions) -> PredictionArrays:
        """Predictions (list of `Detections`, results dict or JSON path) → flat arrays."""
        if isinstance(predictions, (Mapping, str)) or hasattr(predictions, "__fspath__"):
            data, source = load_json_source(predictions, "predictions")
            return from_results(data, source, self.resolver, self.blocked)
        if isinstance(predictions, (list, tuple)):
            return from_detections(predictions, self.resolver, self.blocked)
        raise ValueError(
            "predictions must be a list of Detections, a results dict or a JSON path, "
            f"got {type(predictions).__name__}"
        )

    def gt_video_index(self, preds: PredictionArrays) -> np.ndarray:
        """[N] index of each prediction's video in ``self.gt.video_ids`` (-1: no GT video)."""
        to_gt = np.array(
            [self._video_index.get(v, -1) for v in preds.video_ids], dtype=np.int64
        )  # [V']
        return to_gt[preds.video] if len(preds.video) else np.zeros(0, dtype=np.int64)  # [N]

    def _check_videos(self, preds: PredictionArrays) -> None:
        """Predictions on videos outside the split are false positives (official semantics, with
        a warning); results that list NO video of the split mean mismatched inputs: an error."""
        outside = [v for v in preds.video_ids if v not in self._video_index]
        if not outside:
            return
        where = f"split {list(self.gt.split)} of ground truth {self.gt.source}"
        if len(outside) == len(preds.video_ids):
            raise ValueError(
                f"{preds.source}: none of its {len(outside)} videos is in {where} "
                f"(e.g. {outside[:3]}); wrong results file, annotation file or split?"
            )
        logger.warning(
            "%s: %d of its %d videos are not in %s (e.g. %s); "
            "their predictions count as false positives",
            preds.source, len(outside), len(preds.video_ids), where, outside[:3],
        )  # fmt: skip

    def evaluate(self, predictions: Predictions) -> EvalResult:
        """Compute AP per (tIoU, class), mAP per tIoU and the average mAP.

        Args:
            predictions: a list of `Detections` (unit "sec", labels = GT label ids), or an
                ActivityNet results dict / JSON path ``{"results": {video_id: [{"label",
                "segment": [s, e], "score"}]}}`` whose labels are class names or integer ids.
        Returns:
            EvalResult (fractions).
        """
        preds = self.parse(predictions)
        self._check_videos(preds)
        ap = average_precision(
            preds.segments,
            self.gt_video_index(preds),
            preds.labels,
            preds.scores,
            self.gt.segments,
            self.gt.video_idx,
            self.gt.class_idx,
            self.thresholds,
            self.gt.num_classes,
        )  # [T, C]
        mAP = ap.mean(axis=1)  # [T]
        return EvalResult(
            tiou=self.thresholds.tolist(),
            mAP=mAP.tolist(),
            average_mAP=float(mAP.mean()),
            ap=ap,
            class_names=self.class_names,
        )


def describe_protocol(protocol: Optional[Mapping[str, Any]]) -> str:
    """One line naming the evaluation protocol, e.g. ``protocol: GT as released (official),
    blocked 0 videos, excluded 1 (video_test_0000270), checkpoint last``; "" for None."""
    if not protocol:
        return ""
    dedup = protocol.get("remove_duplicates")
    parts = ["GT de-duplicated (ActionFormer/VMS)" if dedup else "GT as released (official)"]
    for key, word in (("blocked_videos", "blocked"), ("exclude_videos", "excluded")):
        ids = list(protocol.get(key) or ())
        shown = f" ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})" if ids else ""
        parts.append(f"{word} {len(ids)} video{'' if len(ids) == 1 else 's'}{shown}")
    if "checkpoint" in protocol:
        epoch = protocol.get("epoch")
        parts.append(f"checkpoint {protocol['checkpoint']}" + (f" (epoch {epoch})" if epoch else ""))
    return "protocol: " + ", ".join(parts)


def format_table(result: EvalResult, per_class: bool = False) -> str:
    """Readable mAP table in %, optionally followed by a per-class AP table; a result that carries
    its evaluation protocol gets a `describe_protocol` header line.

    Example::

        protocol: GT as released (official), blocked 0 videos, excluded 0 videos, checkpoint last
        tIoU      0.30   0.40   0.50   0.60   0.70    Avg
        mAP (%)  82.26  81.85  75.05  65.82  50.27  71.86
    """
    head = [f"{t:.2f}" for t in result.tiou] + ["Avg"]
    rows = [("mAP (%)", [100 * m for m in result.mAP] + [100 * result.average_mAP])]
    lines = _table("tIoU", head, rows)
    if result.protocol:
        lines.insert(0, describe_protocol(result.protocol))
    if per_class:
        class_rows = [
            (name, list(100 * result.ap[:, c]) + [100 * result.ap[:, c].mean()])
            for c, name in enumerate(result.class_names)
        ]
        lines += [""] + _table("class AP (%)", head, class_rows)
    return "\n".join(lines)


def _table(title: str, head: list[str], rows: list[tuple[str, list[float]]]) -> list[str]:
    first = max([len(title)] + [len(name) for name, _ in rows])
    width = max(6, max(len(h) for h in head))
    lines = [f"{title:<{first}} " + " ".join(f"{h:>{width}}" for h in head)]
    lines += [
        f"{name:<{first}} " + " ".join(f"{v:>{width}.2f}" for v in values) for name, values in rows
    ]
    return lines
