"""Ground-truth characteristics as DETAD defines and bins them (Alwassel et al., ECCV 2018).

Each annotation gets a value per characteristic, read from the annotation when the ground truth
is DETAD's augmented file (keys ``coverage``, ``length``, ``num-instances``, ...), otherwise
computed from the plain annotation:

- ``length``: ``end - start`` in seconds;
- ``coverage``: ``length / duration`` of the video;
- ``num-instances``: the number of annotations of the video, all classes together (what DETAD's
  augmented THUMOS-14 files hold for every one of their 3007 + 3358 annotations).

Values are then binned as ``pandas.cut(values, bins, labels, include_lowest=True)``: bucket
``k`` is ``(edges[k], edges[k + 1]]``, the first bucket also holds ``edges[0]``; values outside
the edges (or NaN) fall in no bucket (-1).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np

from libs.core.annotations import is_number

logger = logging.getLogger(__name__)

Bins = dict[str, tuple[np.ndarray, list[str]]]  # characteristic -> (edges [K + 1], labels [K])

COMPUTABLE = ("coverage", "length", "num-instances")
SIZES5 = ["XS", "S", "M", "L", "XL"]

# DETAD's settings (false_positive_analysis.py / false_negative_analysis.py /
# sensitivity_analysis.py main()). ActivityNet: the validation bins; its testing-only
# characteristics (context-size, context-distance, agreement) can be added with `extra_bins`.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "thumos14": {
        "tiou_thresholds": [0.5],
        "bins": {
            "coverage": ([0, 0.02, 0.04, 0.06, 0.08, 1], SIZES5),
            "length": ([0, 3, 6, 12, 18, math.inf], SIZES5),
            "num-instances": ([-1, 1, 40, 80, math.inf], SIZES5[:4]),
        },
    },
    "activitynet": {
        "tiou_thresholds": np.linspace(0.5, 0.95, 10).tolist(),
        "bins": {
            "coverage": (np.linspace(0, 1.0, 6).tolist(), SIZES5),
            "length": ([0, 30, 60, 120, 180, math.inf], SIZES5),
            "num-instances": ([-1, 1, 4, 8, math.inf], SIZES5[:4]),
        },
    },
}

# DETAD's bins for ActivityNet's testing-only characteristics (values must be in the GT file).
EXTRA_BINS = {
    "context-size": (list(range(-1, 7)), [str(i) for i in range(7)]),
    "context-distance": ([-1, 0, 1, 2, 3], ["Inf", "N", "M", "F"]),
    "agreement": (np.linspace(0, 1.0, 6).tolist(), ["XW", "W", "M", "H", "XH"]),
}


def check_bins(
    name: str, edges: Sequence[float], labels: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """Validate one characteristic's bins → (edges [K + 1] float64, labels [K])."""
    e = np.asarray(edges, dtype=np.float64).reshape(-1)
    if len(e) < 2 or np.isnan(e).any() or not (np.diff(e) > 0).all():
        raise ValueError(
            f"bins of '{name}' must be increasing numbers (at least 2), got {list(edges)}"
        )
    if len(labels) != len(e) - 1 or len(set(labels)) != len(labels):
        raise ValueError(
            f"bins of '{name}': {len(e) - 1} buckets need {len(e) - 1} distinct labels, "
            f"got {list(labels)}"
        )
    return e, [str(s) for s in labels]


def protocol_bins(protocol: str, overrides: Mapping[str, tuple] | None = None) -> Bins:
    """DETAD's bins of ``protocol`` ('thumos14' | 'activitynet'), with ``overrides`` (name →
    (edges, labels)) replacing or adding characteristics."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}'; available: {sorted(PROTOCOLS)}")
    spec = dict(PROTOCOLS[protocol]["bins"])
    spec.update(overrides or {})
    return {name: check_bins(name, e, lab) for name, (e, lab) in spec.items()}


def parse_bins(text: str, protocol: str) -> tuple[str, tuple[list[float], list[str]]]:
    """CLI form ``NAME=E0,E1,...[:L0,L1,...]`` → (name, (edges, labels)).

    Without labels, the protocol's (or DETAD's extra) labels of NAME are kept, which needs the
    same number of buckets. ``inf`` is accepted as an edge.
    """
    name, sep, rest = text.partition("=")
    edges_text, _, labels_text = rest.partition(":")
    try:
        edges = [float(x) for x in edges_text.split(",")]
    except ValueError:
        edges = []
    if not sep or not name or len(edges) < 2:
        raise ValueError(f"--bins '{text}': expected NAME=E0,E1,...[:LABEL0,LABEL1,...]")
    if labels_text:
        labels = labels_text.split(",")
    else:
        known = {**EXTRA_BINS, **PROTOCOLS.get(protocol, {"bins": {}})["bins"]}
        labels = list(known.get(name, ([], []))[1])
        if len(labels) != len(edges) - 1:
            raise ValueError(
                f"--bins '{text}': {len(edges) - 1} buckets but no labels given "
                f"(add ':L0,L1,...')"
            )
    return name, (edges, labels)


def bucket_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[G] float → [G] int64 bucket, -1 outside the edges or NaN (pandas.cut, include_lowest)."""
    idx = np.searchsorted(edges, values, side="left")  # [G] k: edges[k-1] < v <= edges[k]
    idx[values == edges[0]] = 1  # include_lowest
    out = idx - 1
    out[(idx == 0) | (idx == len(edges)) | np.isnan(values)] = -1
    return out.astype(np.int64)


def _computed(
    name: str, db: Mapping[str, Any], video_ids: Sequence[str], source: str
) -> np.ndarray:
    """Characteristic ``name`` of every annotation of ``video_ids``, computed (module doc)."""
    out = []
    for vid in video_ids:
        video = db[vid]
        anns = video.get("annotations", [])
        duration = video.get("duration")
        if name == "coverage" and anns and not (is_number(duration) and duration > 0):
            raise ValueError(
                f"ground truth {source}: video '{vid}' has no positive 'duration', needed for "
                f"the 'coverage' characteristic (or give 'coverage' in every annotation)"
            )
        for a in anns:
            length = float(a["segment"][1]) - float(a["segment"][0])
            if name == "length":
                out.append(length)
            elif name == "coverage":
                out.append(length / float(duration))
            else:
                out.append(float(len(anns)))
    return np.asarray(out, dtype=np.float64)


def characteristic_values(
    db: Mapping[str, Any], video_ids: Sequence[str], names: Sequence[str], source: str
) -> dict[str, np.ndarray]:
    """Per characteristic, [G] float64 values in ground-truth row order (videos in ``video_ids``
    order, annotations in list order): read from the annotations when every one of them holds a
    number under that key, otherwise computed (coverage, length, num-instances only)."""
    anns = [(vid, i, a) for vid in video_ids for i, a in enumerate(db[vid].get("annotations", []))]
    values = {}
    for name in names:
        missing = next(((vid, i) for vid, i, a in anns if not is_number(a.get(name))), None)
        if missing is None:
            values[name] = np.asarray([float(a[name]) for _, _, a in anns], dtype=np.float64)
            logger.info("characteristic '%s' read from the ground truth", name)
        elif name in COMPUTABLE:
            values[name] = _computed(name, db, video_ids, source)
            logger.info("characteristic '%s' computed from the plain ground truth", name)
        else:
            raise ValueError(
                f"ground truth {source}: video '{missing[0]}' annotation {missing[1]} has no "
                f"numeric '{name}'; this characteristic cannot be computed, it must be in "
                f"every annotation (DETAD's augmented ground truth)"
            )
    return values
