"""DETAD's false-positive analysis: error type of each prediction, the profile of the top-1G ...
top-10G predictions, and the average-mAP_N gain from removing each error type.

On the top ``limit_factor * N_c`` predictions of each class (`runs.limit_rows`), a prediction
matched at tIoU threshold t is a True Positive; an unmatched one is compared with every ground
truth of its video (all classes), taking the one of highest tIoU (the first in annotation order
on ties):

- tIoU >= t: Double Detection (same label) or Wrong Label (other label);
- ``min_tiou_thr`` <= tIoU < t: Localization (same label) or Confusion (other label);
- otherwise, or no ground truth in the video: Background.

Group kG holds, for every class, its predictions of score rank ``(k-1) N_c .. k N_c - 1``.
DETAD differs on one input we do not reproduce: for a video WITHOUT ground truth it labels only
the first unmatched prediction Background and compares the next ones with the ground truth of
the last video it looked at (or crashes); we label all of them Background.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from libs.diagnosis.inputs import DiagnosisInputs
from libs.diagnosis.matching import (
    descending_pandas,
    interpolated_ap_from,
    normalized_precision_recall,
)
from libs.diagnosis.runs import Run, evaluate_run, limit_rows
from libs.evaluation.matching import pair_tiou

ERROR_TYPES = [
    "True Positive",
    "Double Detection Err",
    "Wrong Label Err",
    "Localization Err",
    "Confusion Err",
    "Background Err",
]
BACKGROUND = 5


def best_gt(inp: DiagnosisInputs, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For predictions ``rows`` [n]: the highest tIoU with any GT of their video and that GT's
    class (``argmax`` order: first maximum, NaN wins as in numpy). → top [n] (-inf: no GT in
    the video), label [n] (-1: none)."""
    top = np.full(len(rows), -np.inf)
    label = np.full(len(rows), -1, dtype=np.int64)
    counts = np.bincount(inp.gt_video, minlength=len(inp.video_ids))  # [V]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # [V] GT rows are grouped by video
    video = inp.pred_video[rows]  # [n]
    m_per_pred = np.where(video >= 0, counts[video.clip(min=0)], 0)  # [n]
    for m in np.unique(m_per_pred[m_per_pred > 0]).tolist():
        sub = np.flatnonzero(m_per_pred == m)  # [P]
        members = starts[video[sub], None] + np.arange(m)  # [P, m] GT rows, annotation order
        t = pair_tiou(inp.pred_segments[rows[sub]], inp.gt_segments[members])  # [P, m]
        best = t.argmax(axis=1)  # [P]
        top[sub] = t[np.arange(len(sub)), best]
        label[sub] = inp.gt_class[members[np.arange(len(sub)), best]]
    return top, label


def error_types(
    inp: DiagnosisInputs, run: Run, thresholds: np.ndarray, min_tiou: float
) -> np.ndarray:
    """[T, n] int8 error code (index into ERROR_TYPES) of each prediction of ``run``."""
    top, label = best_gt(inp, run.rows)  # [n]
    same = label == inp.pred_class[run.rows]  # [n]
    types = np.zeros(run.matched.shape, dtype=np.int8)  # [T, n]
    for t, thr in enumerate(thresholds.tolist()):
        code = np.where(
            top >= thr, np.where(same, 1, 2), np.where(top >= min_tiou, np.where(same, 3, 4), 5)
        )
        code[label < 0] = BACKGROUND
        types[t] = np.where(run.matched[t] < 0, code, 0)
    return types


def profile(inp: DiagnosisInputs, run: Run, types: np.ndarray, groups: int) -> dict:
    """``{"1G": {error type: fraction} or None (empty group), ..., f"{groups}G": ...}``."""
    order = descending_pandas(inp.pred_scores[run.rows])  # [n] DETAD sorts all by score once
    cls = inp.pred_class[run.rows][order]  # [n]
    group = np.full(len(order), -1, dtype=np.int64)  # [n] group of order[i]
    for c in range(inp.num_classes):
        pos = np.flatnonzero(cls == c)
        group[pos] = np.arange(len(pos)) // int(inp.num_gt[c])
    out: dict[str, Optional[dict]] = {}
    for g in range(groups):
        members = order[group == g]  # positions into run.rows
        if len(members) == 0:
            out[f"{g + 1}G"] = None
            continue
        counts = np.stack([np.bincount(tp, minlength=6) for tp in types[:, members]])  # [T, 6]
        frac = counts.astype(np.float64).mean(axis=0) / len(members)  # [6]
        out[f"{g + 1}G"] = dict(zip(ERROR_TYPES, frac.tolist()))
    return out


def removal_gain(inp: DiagnosisInputs, run: Run, types: np.ndarray) -> dict[str, float]:
    """Average-mAP_N gain when the predictions of each error type are removed (TPs excluded)."""
    num_t = len(types)
    avg_n, num_gt = inp.average_num_instance_per_class, inp.num_gt
    gains = {}
    for code, name in enumerate(ERROR_TYPES[1:], start=1):
        ap = np.zeros((num_t, inp.num_classes))  # [T, C]
        for c, ranked in enumerate(run.rankings):
            tp, kinds = run.matched[:, ranked] >= 0, types[:, ranked]  # [T, n_c]
            for t in range(num_t):
                keep = kinds[t] != code
                prec, rec = normalized_precision_recall(tp[t][keep][None], int(num_gt[c]), avg_n)
                ap[t, c] = interpolated_ap_from(prec, rec)[0]
        gains[name] = float(ap.mean() - run.average_mAP)
    return gains


def false_positive_analysis(
    inp: DiagnosisInputs, thresholds: np.ndarray, limit_factor: int = 10, min_tiou: float = 0.1
) -> dict:
    """DETAD's false_positive_analysis numbers: {"average_mAP_N", "profile",
    "average_mAP_N_gain"}, on each class's top ``limit_factor * N_c`` predictions."""
    run = evaluate_run(inp, limit_rows(inp, limit_factor), thresholds, 0.0)
    types = error_types(inp, run, thresholds, min_tiou)
    return {
        "average_mAP_N": run.average_mAP,
        "profile": profile(inp, run, types, int(limit_factor)),
        "average_mAP_N_gain": removal_gain(inp, run, types),
    }
