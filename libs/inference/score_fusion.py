"""Fusion with external video-level classification scores (ActivityNet / HACS protocol).

Class-agnostic detectors (one "action" class) are turned into class-aware detections by
duplicating each video's proposals for the top-k classes of an external video classifier, with
score sqrt(class_score * proposal_score). This reproduces video-mamba-suite's
`postprocess_results` (ActionFormer's plus softmax of raw logits and nested-list unwrapping),
including its numpy argsort orderings, so the evaluated ranking is the same.
"""

import logging
import math
import os
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
import torch

from libs.core.annotations import is_number
from libs.core.registry import MissingKeyError
from libs.core.safe_io import read_json
from libs.core.structures import Detections

logger = logging.getLogger(__name__)


def load_external_scores(path: str) -> dict:
    """Load {video_id: class scores} from a JSON file; its "results" sub-dict when present.

    Cached per (path, modification time): post-processing calls this once per batch and the
    ActivityNet file holds ~5k videos x 200 classes.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"external score file not found: {path}")
    if not path.endswith(".json"):
        raise ValueError(
            f"external score file must be JSON (the .pkl format is not supported): {path}"
        )
    return _load_json(os.path.abspath(path), os.path.getmtime(path))


@lru_cache(maxsize=2)
def _load_json(path: str, mtime: float) -> dict:
    data = read_json(path, "external score")  # ValueError naming the file
    if isinstance(data, dict) and "results" in data:
        data = data["results"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping video ids to class scores")
    logger.info("loaded external classification scores of %d videos from %s", len(data), path)
    return data


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))  # shift by the max for stability (as scipy.special.softmax)
    return e / np.sum(e)


def video_class_scores(raw: Sequence) -> np.ndarray:
    """One video's external scores -> [C] float64 probabilities.

    A nested [[...]] list is unwrapped; scores outside [0, 1] are taken as logits and softmaxed.
    """
    scores = np.atleast_1d(np.asarray(raw[0] if len(raw) == 1 else raw, dtype=np.float64))  # [C]
    if scores.max() > 1 or scores.min() < 0:
        scores = _softmax(scores)
    return scores


def check_class_scores(raw: object, video_id: str, source: str) -> list:
    """One video's entry of the external scores, checked: a list of C >= 1 finite numbers, or a
    list holding one such list ([[...]], the nesting video-mamba-suite unwraps).

    Raises:
        ValueError: naming the file, the video and what was found.
    """
    inner = raw[0] if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], list) else raw
    if (
        not isinstance(inner, list)
        or not inner
        or not all(is_number(x) and math.isfinite(x) for x in inner)
    ):
        shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
        raise ValueError(
            f"external score file {source}: video '{video_id}': expected a list of class scores "
            f"(C finite numbers, or [[C numbers]]), got {type(raw).__name__} {shown}"
        )
    return raw


def _fuse_video(
    det: Detections, cls_scores: np.ndarray, topk: int, max_per_video: int
) -> Detections:
    """Duplicate the top max_per_video proposals of one video for its top-k classes.

    Output order is class-major: all proposals with the best class, then with the second, ...
    """
    score = det.scores.detach().double().numpy()  # [N]; float64 like the reference's floats
    order = np.argsort(score)[::-1][:max_per_video]  # the reference's (unstable) ordering
    score, segments = score[order], det.segments.detach().numpy()[order]  # [M], [M, 2]
    top_cls = np.argsort(cls_scores)[::-1][:topk]  # [k] class ids (= dataset label ids)
    new_scores = np.sqrt(np.outer(cls_scores[top_cls], score)).reshape(-1)  # [k*M], class-major
    new_segments = np.tile(segments, (len(top_cls), 1))  # [k*M, 2]
    new_labels = np.repeat(top_cls, len(score))  # [k*M]
    return Detections(
        det.video_id,
        torch.from_numpy(np.ascontiguousarray(new_segments)).float(),
        torch.from_numpy(new_scores).float(),
        torch.from_numpy(new_labels.astype(np.int64)),
        det.unit,
    )


def fuse_external_scores(
    dets: Sequence[Detections],
    ext_scores: Mapping,
    topk: int = 2,
    max_per_video: int = 200,
    source: str = "external scores",
) -> list[Detections]:
    """Replace each video's labels/scores by the external classifier's top-k classes.

    Args:
        dets: per-video detections (any unit; segments are copied unchanged).
        ext_scores: {video_id: [C] scores or [[C]]}, e.g. from `load_external_scores`.
        topk: classes per video; max_per_video: proposals kept per video before duplication.
        source: named in the error when a video is missing (e.g. the file path).
    Returns:
        per-video Detections with up to topk * max_per_video rows, class-major order,
        scores float32 sqrt(cls_score * proposal_score). Videos without detections stay empty
        (the reference never looks them up).
    """
    fused = []
    for det in dets:
        if len(det) == 0:
            fused.append(Detections.empty(det.video_id, det.unit))
            continue
        if det.video_id not in ext_scores:
            raise MissingKeyError(f"video '{det.video_id}' has no entry in the external scores ({source})")
        cls_scores = video_class_scores(check_class_scores(ext_scores[det.video_id], det.video_id, source))
        fused.append(_fuse_video(det, cls_scores, topk, max_per_video))
    return fused
