"""Predictions as flat arrays, from `Detections` or an ActivityNet results dict, and back.

Row order matters for exact agreement with the official evaluator (it decides score ties):
rows follow the results dict's video order, then each video's list order. A list of
`Detections` is read as if it had been converted with :func:`detections_to_results` first
(a video id that appears twice is merged at its first position).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from libs.core.annotations import check_segment, is_integer, is_number
from libs.core.structures import Detections
from libs.evaluation.ground_truth import GroundTruth

logger = logging.getLogger(__name__)

RESULTS_VERSION = "VERSION 1.3"


@dataclass
class PredictionArrays:
    """N predictions in evaluation order."""

    video_ids: list[str]  # [V'] distinct prediction videos, first-appearance order
    video: np.ndarray  # [N] int64 index into video_ids
    labels: np.ndarray  # [N] int64 class index into GroundTruth.class_names
    segments: np.ndarray  # [N, 2] float64 seconds
    scores: np.ndarray  # [N] float64
    source: str = "predictions"  # results file path (or "<predictions dict>"), for messages


class LabelResolver:
    """Maps prediction labels (class names or integer ids) to class indices of the split.

    Integer labels are GT ``label_id`` values (looked up by name); when the GT JSON has no
    ``label_id`` (and no ``label_names`` is given) an integer is the index into the split's class
    order. A known class without GT in the split maps to -1: the official evaluator would raise
    KeyError there, while dropping such predictions leaves every AP unchanged.
    """

    def __init__(self, gt: GroundTruth, label_names: Mapping[int, str] | None = None):
        self.gt = gt
        self.name_to_idx = {name: i for i, name in enumerate(gt.class_names)}
        id_to_name = dict(label_names) if label_names is not None else gt.id_to_name
        self.positional = id_to_name is None  # integers index the split's class order
        self.warned = False
        if id_to_name is None:
            self.id_to_idx = {i: i for i in range(gt.num_classes)}
        else:
            self.id_to_idx = {int(k): self.name_to_idx.get(n, -1) for k, n in id_to_name.items()}

    def name(self, label: str, vid: str, source: str) -> int:
        idx = self.name_to_idx.get(label)
        if idx is not None:
            return idx
        if label in self.gt.known_labels:
            return -1
        raise ValueError(
            f"{source}: video '{vid}': unknown label {label!r} "
            f"(not in ground truth {self.gt.source})"
        )

    def id(self, lid: int, vid: str, source: str) -> int:
        self.warn_positional(source)
        idx = self.id_to_idx.get(lid)
        if idx is None:
            known = sorted(self.id_to_idx)
            raise ValueError(
                f"{source}: video '{vid}': unknown label id {lid} "
                f"(known ids: {known[:10]}{' ...' if len(known) > 10 else ''})"
            )
        return idx

    def warn_positional(self, source: str) -> None:
        """Once: integer labels against a ground truth without label_id are a guess by order."""
        if not self.positional or self.warned:
            return
        self.warned = True
        shown = ", ".join(f"{i}={n}" for i, n in enumerate(self.gt.class_names[:4]))
        logger.warning(
            "%s: integer labels, but the ground truth %s has no label_id: each integer is taken as "
            "the index into the split's classes in order of first appearance (%s%s), which differs "
            "between splits; write class names in the results (or label_id in the ground truth) "
            "to be sure", source, self.gt.source, shown,
            ", ..." if len(self.gt.class_names) > 4 else "")

    def ids(self, ids: np.ndarray, vid: str, source: str) -> np.ndarray:
        """[K] int label ids → [K] class indices (-1: class absent from the split)."""
        self.warn_positional(source)
        uniq, inverse = np.unique(ids, return_inverse=True)
        out = np.array([self.id(lid, vid, source) for lid in uniq.tolist()], dtype=np.int64)
        return out[inverse.reshape(-1)]


def _entry(
    r: Any, vid: str, i: int, resolver: LabelResolver, source: str
) -> tuple[int, float, float, float]:
    """Validate one results entry → (class index, start, end, score)."""
    where = f"{source}: video '{vid}' entry {i}"
    if not isinstance(r, Mapping) or not {"label", "segment", "score"} <= r.keys():
        raise ValueError(
            f"{where}: expected an object with 'label', 'segment' and 'score', got {r!r}"
        )
    label, score = r["label"], r["score"]
    if isinstance(label, str):
        cls = resolver.name(label, vid, source)
    elif is_integer(label):
        cls = resolver.id(int(label), vid, source)
    else:
        raise ValueError(f"{where}: 'label' must be a class name or an integer id, got {label!r}")
    if not is_number(score) or not math.isfinite(score):
        raise ValueError(f"{where}: 'score' must be a finite number, got {score!r}")
    start, end = check_segment(r["segment"], where)
    return cls, start, end, float(score)


def _finish(video_ids: list[str], rows: Any, video: Any, source: str) -> PredictionArrays:
    """rows: N × (class index, start, end, score); video: N indices into video_ids."""
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)  # [N, 4]
    labels = table[:, 0].astype(np.int64)
    keep = labels >= 0
    if not keep.all():
        logger.warning(
            "%s: %d predictions of classes without ground truth in the split ignored",
            source,
            int((~keep).sum()),
        )
    return PredictionArrays(
        video_ids=video_ids,
        video=np.asarray(video, dtype=np.int64)[keep],  # [N]
        labels=labels[keep],  # [N]
        segments=table[keep, 1:3].copy(),  # [N, 2]
        scores=table[keep, 3].copy(),  # [N]
        source=source,
    )


def from_results(
    data: Mapping[str, Any], source: str, resolver: LabelResolver, blocked: set
) -> PredictionArrays:
    """Parse an ActivityNet results dict ``{"results": {video_id: [{label, segment, score}]}}``."""
    results = data.get("results")
    if not isinstance(results, Mapping):
        why = "has no 'results' key" if results is None else "'results' is not an object"
        raise ValueError(f"predictions {source} {why}; expected an ActivityNet results JSON")
    video_ids, rows, video = [], [], []
    for vid, entries in results.items():
        if vid in blocked:
            continue
        if not isinstance(entries, list):
            raise ValueError(
                f"{source}: video '{vid}': expected a list of predictions, "
                f"got {type(entries).__name__}"
            )
        for i, r in enumerate(entries):
            rows.append(_entry(r, vid, i, resolver, source))
        video.extend([len(video_ids)] * len(entries))
        video_ids.append(vid)
    return _finish(video_ids, rows, video, source)


def _check_detections(det: Any, i: int) -> None:
    if not isinstance(det, Detections):
        raise ValueError(
            f"predictions[{i}] is a {type(det).__name__}, expected libs.core.structures.Detections"
        )
    if det.unit != "sec":
        raise ValueError(
            f"video '{det.video_id}': Detections must be in seconds (unit 'sec'), "
            f"got unit '{det.unit}'"
        )
    if det.labels.is_floating_point() or det.labels.is_complex():
        raise ValueError(
            f"video '{det.video_id}': Detections.labels must be integer ids, got {det.labels.dtype}"
        )
    if len(det) and (det.segments.dim() != 2 or det.segments.shape[-1] != 2):
        raise ValueError(
            f"video '{det.video_id}': Detections.segments must be [K, 2], "
            f"got {tuple(det.segments.shape)}"
        )


def _detections_arrays(det: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """→ segments [K, 2] float64, scores [K] float64, labels [K] int64, checked finite."""
    segments = det.segments.detach().cpu().double().numpy().reshape(-1, 2)  # [K, 2]
    scores = det.scores.detach().cpu().double().numpy().reshape(-1)  # [K]
    labels = det.labels.detach().cpu().long().numpy().reshape(-1)  # [K]
    if not np.isfinite(scores).all():
        raise ValueError(f"video '{det.video_id}': non-finite score in Detections")
    if not np.isfinite(segments).all():
        raise ValueError(f"video '{det.video_id}': non-finite segment in Detections")
    return segments, scores, labels


def from_detections(
    dets: Sequence[Detections], resolver: LabelResolver, blocked: set
) -> PredictionArrays:
    """Flatten per-video `Detections` (unit "sec", labels = GT label ids)."""
    order: dict[str, list[int]] = {}  # video id -> positions in dets, merged at first appearance
    for i, det in enumerate(dets):
        _check_detections(det, i)
        if det.video_id not in blocked:
            order.setdefault(det.video_id, []).append(i)
    video_ids = list(order)
    parts = []
    for v, vid in enumerate(video_ids):
        for i in order[vid]:
            segments, scores, ids = _detections_arrays(dets[i])
            cls = resolver.ids(ids, vid, "predictions")
            parts.append(np.column_stack([cls, segments, scores, np.full(len(ids), v)]))  # [K, 5]
    table = np.concatenate(parts) if parts else np.zeros((0, 5))  # [N, 5]
    return _finish(video_ids, table[:, :4], table[:, 4], "predictions")


def detections_to_results(dets: Sequence[Detections], id_to_name: Mapping[int, str]) -> dict:
    """Build an ActivityNet results dict from per-video `Detections` (unit "sec").

    Args:
        dets: per-video detections; labels are dataset label ids.
        id_to_name: label id -> class name (e.g. the GT JSON's label_id -> label).
    Returns:
        ``{"version", "results": {video_id: [{"label", "segment": [s, e], "score"}]},
        "external_data"}``
        with full-precision floats. A video id that appears twice is merged into one list.
    """
    results: dict[str, list] = {}
    for i, det in enumerate(dets):
        _check_detections(det, i)
        entries = results.setdefault(det.video_id, [])
        segments = det.segments.detach().cpu().reshape(-1, 2).tolist()
        scores = det.scores.detach().cpu().reshape(-1).tolist()
        for lid, seg, score in zip(
            det.labels.detach().cpu().reshape(-1).tolist(), segments, scores
        ):
            if lid not in id_to_name:
                raise ValueError(
                    f"video '{det.video_id}': label id {lid} has no name in id_to_name"
                )
            entries.append(
                {
                    "label": id_to_name[lid],
                    "segment": [float(seg[0]), float(seg[1])],
                    "score": float(score),
                }
            )
    return {
        "version": RESULTS_VERSION,
        "results": results,
        "external_data": {"used": False, "details": ""},
    }
