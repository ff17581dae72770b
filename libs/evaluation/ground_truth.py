"""Ground truth of one split of an ActivityNet-style annotation JSON, as flat arrays.

The JSON looks like
``{"database": {video_id: {"subset": str, "duration": float,
"annotations": [{"label": str, "segment": [start, end], "label_id": int (optional)}]}}}``.

Class order follows ActivityNet's official ``eval_detection.py``: a class gets the next index
the first time its *name* appears among the annotations of the selected split, walking the
videos in JSON order and each video's annotations in list order.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

GtSource = Union[str, os.PathLike, Mapping[str, Any]]

# VMS/ActionFormer `remove_duplicate_annotations` tolerance (seconds).
DUPLICATE_TOL = 1e-3


@dataclass(frozen=True)
class GroundTruth:
    """Annotations of the selected split, flattened in the official row order.

    ``segments[i]``, ``video_idx[i]`` and ``class_idx[i]`` describe annotation ``i``; rows are
    ordered by video (JSON order), then annotation order inside the video.
    """

    source: str  # file path or "<dict>", used in error messages
    split: tuple[str, ...]  # lower-cased subset names
    video_ids: list[str]  # [V] videos of the split (blocked ones removed), JSON order
    class_names: list[str]  # [C] class names, order of first appearance in the split
    segments: np.ndarray  # [G, 2] float64 seconds
    video_idx: np.ndarray  # [G] int64 index into video_ids
    class_idx: np.ndarray  # [G] int64 index into class_names
    known_labels: frozenset  # every label name of the whole database (all subsets)
    id_to_name: Optional[dict[int, str]]  # label_id -> name over the whole database, None if no ids

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def is_number(x: Any) -> bool:
    """True for ints and floats (Python or numpy), False for bools, strings, containers and
    ints beyond the float64 range (JSON allows them; float() would raise OverflowError)."""
    if not isinstance(x, numbers.Real) or isinstance(x, (bool, np.bool_)):
        return False
    try:
        float(x)
    except OverflowError:
        return False
    return True


def is_integer(x: Any) -> bool:
    """A finite number with an integral value (label ids may be written 3 or 3.0)."""
    return is_number(x) and math.isfinite(x) and int(x) == x


def check_segment(segment: Any, where: str) -> tuple[float, float]:
    """Validate a ``[start, end]`` pair of finite numbers; ``where`` names the culprit."""
    if (
        not isinstance(segment, (list, tuple))
        or len(segment) != 2
        or not (is_number(segment[0]) and is_number(segment[1]))
    ):
        raise ValueError(f"{where}: 'segment' must be [start, end] (2 numbers), got {segment!r}")
    start, end = float(segment[0]), float(segment[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{where}: 'segment' must be finite, got {segment!r}")
    return start, end


def load_json_source(source: GtSource, kind: str) -> tuple[Mapping[str, Any], str]:
    """Return ``(parsed JSON object, name for messages)`` from a path or an already loaded dict."""
    if isinstance(source, Mapping):
        return source, f"<{kind} dict>"
    path = os.fspath(source)
    try:
        with open(path, "r", encoding="utf8") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read {kind} file '{path}': {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{kind} file '{path}' is not valid JSON: {e}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{kind} file '{path}' must hold a JSON object, got {type(data).__name__}")
    return data, path


def _database(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    db = data.get("database")
    if not isinstance(db, Mapping):
        why = "has no 'database' key" if db is None else "'database' is not an object"
        raise ValueError(
            f"ground truth {source} {why}; expected an ActivityNet-style annotation JSON"
        )
    for vid, video in db.items():
        if not isinstance(video, Mapping) or not isinstance(video.get("subset"), str):
            raise ValueError(f"ground truth {source}: video '{vid}' has no string 'subset'")
        anns = video.get("annotations", [])
        if not isinstance(anns, list) or not all(isinstance(a, Mapping) for a in anns):
            raise ValueError(
                f"ground truth {source}: video '{vid}': 'annotations' must be a list of objects"
            )
        for ann in anns:
            if not isinstance(ann.get("label"), str):
                raise ValueError(
                    f"ground truth {source}: video '{vid}': "
                    f"annotation without a string 'label': {ann!r}"
                )
    return db


def _label_id_map(db: Mapping[str, Any], source: str) -> Optional[dict[int, str]]:
    """label_id -> label name over every subset; None when no annotation carries a label_id."""
    id_to_name: dict[int, str] = {}
    for vid, video in db.items():
        for ann in video.get("annotations", []):
            if "label_id" not in ann:
                continue
            lid = ann["label_id"]
            if not is_integer(lid):
                raise ValueError(
                    f"ground truth {source}: video '{vid}': "
                    f"label_id must be an integer, got {lid!r}"
                )
            name = id_to_name.setdefault(int(lid), ann["label"])
            if name != ann["label"]:
                raise ValueError(
                    f"ground truth {source}: video '{vid}': label_id {int(lid)} is used for both "
                    f"'{name}' and '{ann['label']}'"
                )
    return id_to_name or None


def remove_duplicate_annotations(
    events: Sequence[tuple[float, float, str]], tol: float = DUPLICATE_TOL
) -> list[tuple[float, float, str]]:
    """ActionFormer/VMS GT clean-up of one video's ``(start, end, label)`` events.

    Drops events with ``end - start <= 0`` and events whose start and end are both within
    ``tol`` of an earlier *kept* event with the same label. Order is preserved.
    """
    kept: list[tuple[float, float, str]] = []
    for s, e, label in events:
        if e - s <= 0:
            continue
        if any(abs(s - ks) <= tol and abs(e - ke) <= tol and label == kl for ks, ke, kl in kept):
            continue
        kept.append((s, e, label))
    return kept


def _split_videos(
    db: Mapping[str, Any], split: tuple[str, ...], blocked: set, source: str
) -> list[str]:
    video_ids = [
        vid for vid, v in db.items() if v["subset"].lower() in split and vid not in blocked
    ]
    if not video_ids:
        subsets = sorted({v["subset"] for v in db.values()})
        note = " once blocked videos are removed" if blocked else ""
        raise ValueError(
            f"ground truth {source}: no video of split {list(split)}{note}; "
            f"subsets in the file: {subsets}"
        )
    return video_ids


def _normalise_split(split: Union[str, Iterable[str]]) -> tuple[str, ...]:
    names = (split,) if isinstance(split, str) else tuple(split)
    if not names or not all(isinstance(s, str) for s in names):
        raise ValueError(f"split must be a subset name or a list of names, got {split!r}")
    return tuple(s.lower() for s in names)


def _video_events(
    video: Mapping[str, Any], vid: str, source: str
) -> list[tuple[float, float, str]]:
    """One video's annotations as validated ``(start, end, label)`` tuples, in list order."""
    events = []
    for i, ann in enumerate(video.get("annotations", [])):
        where = f"ground truth {source}: video '{vid}' annotation {i}"
        events.append((*check_segment(ann.get("segment"), where), ann["label"]))
    return events


def load_ground_truth(
    gt: GtSource,
    split: Union[str, Iterable[str]],
    *,
    remove_duplicates: bool = False,
    blocked_videos: Iterable[str] = (),
) -> GroundTruth:
    """Read and validate the annotations of ``split`` (subset names matched case-insensitively).

    Args:
        gt: path of the annotation JSON, or the already loaded dict.
        split: subset name(s), e.g. "validation" or ["Validation", "Test"].
        remove_duplicates: apply :func:`remove_duplicate_annotations` per video (not official).
        blocked_videos: video ids dropped from the ground truth (official semantics).
    Returns:
        GroundTruth with G annotations over C classes.
    """
    data, source = load_json_source(gt, "ground truth")
    db = _database(data, source)
    split_names = _normalise_split(split)
    video_ids = _split_videos(db, split_names, set(blocked_videos), source)
    class_index: dict[str, int] = {}
    segments, video_idx, class_idx, n_degenerate = [], [], [], 0
    for v, vid in enumerate(video_ids):
        events = _video_events(db[vid], vid, source)
        if remove_duplicates:
            events = remove_duplicate_annotations(events)
        for s, e, label in events:
            n_degenerate += e <= s
            segments.append((s, e))
            video_idx.append(v)
            class_idx.append(class_index.setdefault(label, len(class_index)))
    if not segments:
        raise ValueError(
            f"ground truth {source}: split {list(split_names)} has videos but no annotations"
        )
    if n_degenerate:
        logger.warning(
            "ground truth %s: %d annotations with end <= start kept (official semantics)",
            source,
            n_degenerate,
        )
    known = frozenset(a["label"] for v in db.values() for a in v.get("annotations", []))
    return GroundTruth(
        source=source,
        split=split_names,
        video_ids=video_ids,
        class_names=list(class_index),
        segments=np.asarray(segments, dtype=np.float64).reshape(-1, 2),  # [G, 2]
        video_idx=np.asarray(video_idx, dtype=np.int64),  # [G]
        class_idx=np.asarray(class_idx, dtype=np.int64),  # [G]
        known_labels=known,
        id_to_name=_label_id_map(db, source),
    )
