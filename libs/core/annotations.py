"""The one reader of ActivityNet-style annotation JSON files.

    {"database": {video_id: {"subset": str, "duration": float, "fps": float (optional),
                             "annotations": [{"label": str, "segment": [start_s, end_s],
                                              "label_id": int (optional)}]}}}

`read_annotations` checks the structure every consumer relies on (the dataset for training, the
ground truth for evaluation, tools/prepare_features.py verify) and returns the `database`
mapping with the label-id maps. Consumers add only their own checks on top: the dataset needs a
`label_id` on every annotation and one id per label name (`require_label_ids=True`); the
evaluation needs a string `subset` on every video. Every error is a ValueError that names the
file (or "<kind dict>"), the video and the annotation.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np

from libs.core.safe_io import read_json

JsonSource = Union[str, os.PathLike, Mapping[str, Any]]

# ActionFormer/VMS `remove_duplicate_annotations` tolerance (seconds).
DUPLICATE_TOL = 1e-3
# duration x fps above this is a unit mistake or a hostile value (1e308 overflows the seconds <->
# feature-grid conversion), not a video: 1e9 frames is 96 days at 120 fps
MAX_VIDEO_FRAMES = 1e9


def video_length_problem(duration: float, fps: float) -> Union[str, None]:
    """Why `duration` seconds at `fps` cannot be a real video (None: it can)."""
    with np.errstate(over="ignore"):
        frames = float(np.float64(duration) * np.float64(fps))
    if math.isfinite(frames) and frames <= MAX_VIDEO_FRAMES:
        return None
    return (f"'duration' {duration:g} s at {fps:g} fps is {frames:.3g} frames, more than any real video "
            f"(at most {MAX_VIDEO_FRAMES:.0e}); is the duration in seconds?")


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


def load_json_source(source: JsonSource, kind: str) -> tuple[Mapping[str, Any], str]:
    """Return ``(parsed JSON object, name for messages)`` from a path or an already loaded dict."""
    if isinstance(source, Mapping):
        return source, f"<{kind} dict>"
    path = os.fspath(source)
    data = read_json(path, kind)  # regular files only; duplicate keys, deep nesting refused
    if not isinstance(data, Mapping):
        raise ValueError(f"{kind} file '{path}' must hold a JSON object, got {type(data).__name__}")
    return data, path


@dataclass(frozen=True)
class AnnotationFile:
    """A checked annotation JSON: the `database` and the label maps over every subset."""

    source: str  # file path or "<kind dict>", used in error messages
    database: Mapping[str, Mapping[str, Any]]  # video id -> video, JSON order
    label_ids: dict[str, int]  # label name -> label_id (annotations with a label_id)
    id_to_name: dict[int, str]  # label_id -> label name


def read_annotations(
    source: JsonSource, kind: str = "annotations", require_label_ids: bool = False
) -> AnnotationFile:
    """Read and check an annotation JSON (path or dict); see the module docstring.

    Args:
        kind: what the file is to the caller, the first words of every message
            (e.g. "ground truth" -> "ground truth data/x.json: video 'v' annotation 0: ...").
        require_label_ids: every annotation needs an integer `label_id`, and a label name keeps
            one id (training); otherwise a `label_id` is optional but an id keeps one name.
    """
    data, name = load_json_source(source, kind)
    where = f"{kind} {name}"
    database = data.get("database")
    if not isinstance(database, Mapping):
        why = "has no 'database' key" if database is None else "'database' is not an object"
        raise ValueError(f"{where} {why}; expected an ActivityNet-style annotation JSON")
    name_to_id: dict[str, int] = {}
    id_to_name: dict[int, str] = {}
    for vid, video in database.items():
        if not isinstance(video, Mapping):
            raise ValueError(f"{where}: video '{vid}' must be an object, got {type(video).__name__}")
        acts = video.get("annotations", [])
        if not isinstance(acts, list):
            raise ValueError(f"{where}: video '{vid}': 'annotations' must be a list, got {type(acts).__name__}")
        for i, act in enumerate(acts):
            label_id = _check_annotation(act, f"{where}: video '{vid}' annotation {i}", require_label_ids)
            if label_id is not None:
                _add_label(act["label"], label_id, name_to_id, id_to_name, require_label_ids,
                           f"{where}: video '{vid}' annotation {i}")
    return AnnotationFile(name, database, name_to_id, id_to_name)


def _check_annotation(act: Any, where: str, require_label_id: bool) -> Union[int, None]:
    """One annotation's label, label_id and segment; returns the label_id (None: absent)."""
    if not isinstance(act, Mapping) or not isinstance(act.get("label"), str):
        raise ValueError(f"{where}: expected an object with a string 'label', got {act!r}")
    label_id = None
    if "label_id" in act:
        if not is_integer(act["label_id"]):
            raise ValueError(f"{where}: 'label_id' must be an integer, got {act['label_id']!r}")
        label_id = int(act["label_id"])
    elif require_label_id:
        raise ValueError(f"{where}: label {act['label']!r} has no 'label_id' (the integer class id)")
    check_segment(act.get("segment"), where)
    return label_id


def _add_label(label: str, label_id: int, name_to_id: dict, id_to_name: dict, one_id_per_name: bool,
               where: str) -> None:
    """Record label <-> label_id; an id used for two names (or a name with two ids) is an error."""
    known_name = id_to_name.setdefault(label_id, label)
    known_id = name_to_id.get(label, label_id)
    name_to_id[label] = label_id  # the last id of a name wins (only possible when not one_id_per_name)
    if known_name != label or (one_id_per_name and known_id != label_id):
        raise ValueError(f"{where}: label {label!r} with label_id {label_id} contradicts an earlier annotation "
                         f"(label {label!r} has label_id {known_id}, label_id {label_id} is {known_name!r})")


def build_label_dict(database: Mapping[str, Any]) -> dict[str, int]:
    """Label name -> JSON label_id over ALL videos of all subsets (no re-indexing)."""
    label_dict: dict[str, int] = {}
    for value in database.values():
        for act in value.get("annotations", []):
            label_dict[act["label"]] = int(act["label_id"])
    return label_dict


def remove_duplicate_annotations(acts: Sequence[Mapping[str, Any]], tol: float = DUPLICATE_TOL) -> list:
    """ActionFormer/VMS clean-up of one video's checked annotations, order kept.

    Drops events with ``end - start <= 0`` and events whose start and end are both within
    ``tol`` seconds of an earlier *kept* event with the same label.
    """
    kept: list = []
    for act in acts:
        s, e = act["segment"]
        if e - s <= 0:
            continue
        if not any(abs(s - k["segment"][0]) <= tol and abs(e - k["segment"][1]) <= tol
                   and act["label"] == k["label"] for k in kept):
            kept.append(act)
    return kept
