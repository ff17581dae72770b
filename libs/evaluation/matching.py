"""Vectorised ActivityNet detection AP: greedy tIoU matching + VOC-2011 interpolated AP.

Semantics (identical numbers to ActivityNet's official ``Evaluation/eval_detection.py``):
per class, predictions are ranked with ``scores.argsort()[::-1]`` over the class's predictions
in evaluation order; each prediction walks the GTs of its (video, class) in
``tiou.argsort()[::-1]`` order: tIoU < threshold → FP and stop, GT already taken at this
threshold → next GT, otherwise TP and take the GT. Predictions in a (video, class) without GT
are FP; running out of GTs is FP.

Why a loop over ranks is enough: a prediction only competes for the GTs of its own
(video, class) group, so the walk of the k-th ranked prediction of every group can run at once,
after the (k-1)-th ones. Groups are bucketed by the next power of two of their GT count so the
padded [n, W] tIoU tables waste at most half their space (THUMOS has a group with 218 GTs).
numpy's argsort is unstable, so ties are reproduced by sorting arrays of exactly the shape the
official code sorts: per class the 1-D score array, per prediction its row of m tIoUs (row-wise
argsort of an [n, m] array sorts each row as the same 1-D sort would).
"""

from __future__ import annotations

import numpy as np


def class_rankings(labels: np.ndarray, scores: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Per class, prediction rows ordered the official way (descending score, numpy tie order).

    Args:
        labels: [N] int64 class index; scores: [N] float64, rows in evaluation order.
    Returns:
        C arrays of row indices, each [N_c].
    """
    by_class = np.argsort(labels, kind="stable")  # [N] rows grouped by class, order kept inside
    bounds = np.searchsorted(labels[by_class], np.arange(num_classes + 1))  # [C + 1]
    rankings = []
    for c in range(num_classes):
        rows = by_class[bounds[c] : bounds[c + 1]]  # [N_c] the class's rows, evaluation order
        rankings.append(rows[scores[rows].argsort()[::-1]])
    return rankings


def rank_in_class(rankings: list[np.ndarray], num_predictions: int) -> np.ndarray:
    """[N] int64 position of each prediction in its class ranking (`class_rankings` inverted)."""
    class_rank = np.zeros(num_predictions, dtype=np.int64)  # [N]
    for ranked in rankings:
        class_rank[ranked] = np.arange(len(ranked))
    return class_rank


def pair_tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tIoU of each prediction with its own GT row: pred [P, 2], gt [P, m, 2] → [P, m].

    Same float operations, in the same order, as the official ``segment_iou`` (0/0 gives NaN,
    which the matcher then treats like the official code does: NaN < thr is False).
    """
    ps, pe = pred[:, None, 0], pred[:, None, 1]  # [P, 1]
    inter = (np.minimum(pe, gt[..., 1]) - np.maximum(ps, gt[..., 0])).clip(0)  # [P, m]
    union = (gt[..., 1] - gt[..., 0]) + (pe - ps) - inter  # [P, m]
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _group_predictions(
    pred_video: np.ndarray,
    pred_class: np.ndarray,
    gt_video: np.ndarray,
    gt_class: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Attach predictions to (video, class) GT groups.

    Returns:
        gt_order [G] GT rows sorted by group (annotation order kept inside a group),
        group_start [H], group_count [H] into gt_order, and pred_group [N] (-1: no GT in group).
    """
    gt_key = gt_video * num_classes + gt_class  # [G]
    gt_order = np.argsort(gt_key, kind="stable")  # [G]
    keys, group_start, group_count = np.unique(
        gt_key[gt_order], return_index=True, return_counts=True
    )  # [H]
    pred_key = np.where(pred_video >= 0, pred_video * num_classes + pred_class, -1)  # [N]
    pos = np.searchsorted(keys, pred_key).clip(max=len(keys) - 1)  # [N]
    pred_group = np.where(keys[pos] == pred_key, pos, -1)  # [N]
    return gt_order, group_start, group_count, pred_group


def _sorted_tiou_table(
    rows: np.ndarray,
    groups: np.ndarray,
    width: int,
    pred_segments: np.ndarray,
    gt_segments: np.ndarray,
    gt_order: np.ndarray,
    group_start: np.ndarray,
    group_count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For predictions ``rows`` [P] in ``groups`` [P]: tIoUs to their group's GTs in walk order.

    Returns:
        tiou [P, width] float64 (padding -inf, i.e. below any threshold),
        gt_rows [P, width] int64 GT row per slot (padding → G, a dummy lock column).
    """
    tiou = np.full((len(rows), width), -np.inf)  # [P, W]
    gt_rows = np.full((len(rows), width), len(gt_order), dtype=np.int64)  # [P, W]
    counts = group_count[groups]  # [P]
    for m in np.unique(counts).tolist():
        sub = np.flatnonzero(counts == m)  # [P_m]
        # [P_m, m] GT rows of each prediction's group, in annotation order
        members = gt_order[group_start[groups[sub], None] + np.arange(m)]
        t = pair_tiou(pred_segments[rows[sub]], gt_segments[members])  # [P_m, m]
        walk = t.argsort(axis=1)[:, ::-1]  # [P_m, m] descending tIoU, official tie order
        tiou[sub, :m] = np.take_along_axis(t, walk, axis=1)
        gt_rows[sub, :m] = np.take_along_axis(members, walk, axis=1)
    return tiou, gt_rows


def _greedy_by_rank(
    tiou: np.ndarray,
    gt_rows: np.ndarray,
    rank: np.ndarray,
    rows: np.ndarray,
    thresholds: np.ndarray,
    lock: np.ndarray,
    matched: np.ndarray,
) -> None:
    """Run the official walk for one bucket, rank by rank, writing ``matched`` and ``lock`` in
    place.

    Args:
        tiou, gt_rows: [P, W] from `_sorted_tiou_table`; rank: [P] rank inside the group;
        rows: [P] prediction rows; thresholds: [T]; lock: [T, G + 1] bool;
        matched: [T, N] int64, -1 on entry; gets the GT row each true positive takes.
    """
    by_rank = np.argsort(rank, kind="stable")  # [P]
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))  # [K + 1]
    thr = thresholds[:, None, None]  # [T, 1, 1]
    for k in range(len(bounds) - 1):
        sel = by_rank[bounds[k] : bounds[k + 1]]  # [n] one prediction per group
        slots = gt_rows[sel]  # [n, W]
        below = tiou[sel][None] < thr  # [T, n, W]
        free = ~below & ~lock[:, slots]  # [T, n, W] slots where the walk would stop with a TP
        first = (below | free).argmax(axis=2)  # [T, n] where the walk stops (0 if it never does)
        hit = np.take_along_axis(free, first[..., None], axis=2)[..., 0]  # [T, n]
        ti, ni = np.nonzero(hit)
        taken = slots[ni, first[ti, ni]]  # [hits] GT rows
        lock[ti, taken] = True
        matched[ti, rows[sel][ni]] = taken


def match_gt(
    pred_segments: np.ndarray,
    pred_video: np.ndarray,
    pred_class: np.ndarray,
    class_rank: np.ndarray,
    gt_segments: np.ndarray,
    gt_video: np.ndarray,
    gt_class: np.ndarray,
    thresholds: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Greedy matching of all predictions at all thresholds: which GT each prediction takes.

    Args:
        pred_segments [N, 2]; pred_video [N] GT video index or -1 (video without GT);
        pred_class [N]; class_rank [N] position of the prediction in its class ranking;
        gt_segments [G, 2]; gt_video [G]; gt_class [G]; thresholds [T].
    Returns:
        matched [T, N] int64: the GT row each prediction takes at each threshold, -1 for a
        false positive.
    """
    matched = np.full((len(thresholds), len(pred_segments)), -1, dtype=np.int64)  # [T, N]
    if len(gt_segments) == 0:
        return matched
    gt_order, group_start, group_count, pred_group = _group_predictions(
        pred_video, pred_class, gt_video, gt_class, num_classes
    )
    rows = np.flatnonzero(pred_group >= 0)  # [P] predictions that have GT to match
    if len(rows) == 0:
        return matched
    rows = rows[np.lexsort((class_rank[rows], pred_group[rows]))]  # by group, then class rank
    groups = pred_group[rows]  # [P]
    rank = np.arange(len(rows)) - np.searchsorted(groups, groups)  # [P] rank inside the group
    width = 1 << np.ceil(np.log2(group_count[groups])).astype(np.int64)  # [P] pow2 bucket width
    lock = np.zeros((len(thresholds), len(gt_segments) + 1), dtype=bool)  # [T, G + 1]
    for w in np.unique(width).tolist():
        b = width == w
        tiou, gt_rows = _sorted_tiou_table(
            rows[b], groups[b], w, pred_segments, gt_segments, gt_order, group_start, group_count
        )
        _greedy_by_rank(tiou, gt_rows, rank[b], rows[b], thresholds, lock, matched)
    return matched


def match_predictions(
    pred_segments: np.ndarray,
    pred_video: np.ndarray,
    pred_class: np.ndarray,
    class_rank: np.ndarray,
    gt_segments: np.ndarray,
    gt_video: np.ndarray,
    gt_class: np.ndarray,
    thresholds: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """`match_gt` as true/false (same arguments).

    Returns:
        tp [T, N] bool: True where the prediction is a true positive at that threshold.
    """
    matched = match_gt(
        pred_segments, pred_video, pred_class, class_rank, gt_segments, gt_video, gt_class,
        thresholds, num_classes,
    )  # fmt: skip
    return matched >= 0


def interpolated_ap(tp: np.ndarray, num_gt: int) -> np.ndarray:
    """VOC-2011 interpolated AP per threshold, computed with the official float operations.

    Args:
        tp: [T, n] bool, predictions of one class in ranking order; num_gt: GT count (> 0).
    Returns:
        [T] float64 AP.
    """
    tp_cum = np.cumsum(tp.astype(np.float64), axis=1)  # [T, n]
    fp_cum = np.cumsum((~tp).astype(np.float64), axis=1)  # [T, n]
    recall = tp_cum / float(num_gt)
    precision = tp_cum / (tp_cum + fp_cum)
    zeros, ones = np.zeros((len(tp), 1)), np.ones((len(tp), 1))
    mprec = np.hstack([zeros, precision, zeros])  # [T, n + 2]
    mrec = np.hstack([zeros, recall, ones])  # [T, n + 2]
    # precision envelope: running max from the right
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]  # [T, n + 2]
    step = mrec[:, 1:] != mrec[:, :-1]  # [T, n + 1] where recall changes
    area = (mrec[:, 1:] - mrec[:, :-1]) * mprec[:, 1:]  # [T, n + 1]
    # One np.sum per threshold over exactly the selected terms: pairwise summation rounds
    # differently if zero terms are kept in, and we want the official bits.
    return np.array([np.sum(area[t][step[t]]) for t in range(len(tp))])


def average_precision(
    pred_segments: np.ndarray,
    pred_video: np.ndarray,
    pred_class: np.ndarray,
    pred_scores: np.ndarray,
    gt_segments: np.ndarray,
    gt_video: np.ndarray,
    gt_class: np.ndarray,
    thresholds: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """AP per (threshold, class); classes without predictions get 0.

    Args: as `match_predictions`, plus pred_scores [N] float64. Returns: ap [T, C] float64.
    """
    rankings = class_rankings(pred_class, pred_scores, num_classes)
    tp = match_predictions(
        pred_segments,
        pred_video,
        pred_class,
        rank_in_class(rankings, len(pred_class)),
        gt_segments,
        gt_video,
        gt_class,
        thresholds,
        num_classes,
    )
    num_gt = np.bincount(gt_class, minlength=num_classes)  # [C]
    ap = np.zeros((len(thresholds), num_classes))  # [T, C]
    for c, ranked in enumerate(rankings):
        if len(ranked):
            ap[:, c] = interpolated_ap(tp[:, ranked], int(num_gt[c]))
    return ap
