"""Ground truth of one split of an ActivityNet-style annotation JSON, as flat arrays.

The file is read and checked by `libs.core.annotations.read_annotations` (the one parser, shared
with the datasets); the evaluation adds its own check that every video has a string `subset`.

Class order follows ActivityNet's official ``eval_detection.py``: a class gets the next index
the first time its *name* appears among the annotations of the selected split, walking the
videos in JSON order and each video's annotations in list order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np

from libs.core.annotations import JsonSource, read_annotations, remove_duplicate_annotations

logger = logging.getLogger(__name__)

GtSource = JsonSource


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


def _check_subsets(db: Mapping[str, Any], source: str) -> None:
    """The evaluation's own check on top of the shared parser: every video has a string subset."""
    for vid, video in db.items():
        if not isinstance(video.get("subset"), str):
            raise ValueError(f"ground truth {source}: video '{vid}' has no string 'subset'")


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


def _video_events(anns: list) -> list[tuple[float, float, str]]:
    """One video's (checked) annotations as ``(start, end, label)`` tuples, in list order."""
    return [(float(a["segment"][0]), float(a["segment"][1]), a["label"]) for a in anns]


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
        remove_duplicates: apply `libs.core.annotations.remove_duplicate_annotations` per video
            (not official).
        blocked_videos: video ids dropped from the ground truth (official semantics).
    Returns:
        GroundTruth with G annotations over C classes.
    """
    annotations = read_annotations(gt, "ground truth")
    db, source = annotations.database, annotations.source
    _check_subsets(db, source)
    split_names = _normalise_split(split)
    video_ids = _split_videos(db, split_names, set(blocked_videos), source)
    class_index: dict[str, int] = {}
    segments, video_idx, class_idx, n_degenerate = [], [], [], 0
    for v, vid in enumerate(video_ids):
        anns = db[vid].get("annotations", [])
        events = _video_events(remove_duplicate_annotations(anns) if remove_duplicates else anns)
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
        id_to_name=annotations.id_to_name or None,
    )
