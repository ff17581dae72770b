"""DETAD's orderings and normalised AP on flat arrays.

Matching is the evaluator's greedy ActivityNet matching, `libs.evaluation.matching.match_gt`
(same tie order), which also says WHICH ground truth each prediction takes, as DETAD's analyses
need.

AP is DETAD's *normalised* AP (Alwassel et al., 2018): precision uses the average number of
instances per class ``N`` instead of the class's own count,
``precision = recall * N / (recall * N + FP)``, then VOC-2011 interpolation. The evaluator's
`interpolated_ap` computes the plain precision from TP/FP counts inside, so it cannot be reused
for this; `interpolated_ap_from` below does the same interpolation from given precision/recall.

DETAD sorts with three different calls, which order ties differently; each is reproduced by the
same numpy call on an array of the same shape (numpy's sorts are deterministic):
``scores.argsort()[::-1]`` (the evaluator's `libs.evaluation.matching.class_rankings`),
``DataFrame.sort_values(ascending=False)`` (`descending_pandas`) and
``DataFrame.nlargest(n, 'score')`` (`nlargest`).
"""

from __future__ import annotations

import numpy as np


def descending_pandas(scores: np.ndarray) -> np.ndarray:
    """[n] positions by descending score, in ``sort_values(ascending=False)``'s tie order
    (pandas' nargsort: reverse, quicksort, reverse back)."""
    positions = np.arange(len(scores))[::-1]
    return positions[scores[::-1].argsort(kind="quicksort")][::-1]


def nlargest(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of ``DataFrame.nlargest(n, 'score')`` (keep='first'), in its row order."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n >= len(scores):  # pandas sorts the whole column instead
        return descending_pandas(scores)
    neg = -scores
    kth = np.partition(neg, n - 1)[n - 1]
    cand = np.flatnonzero(neg <= kth)  # [m >= n] the n largest and every tie of the last one
    return cand[neg[cand].argsort(kind="mergesort")][:n]


def class_rows(pred_class: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Per class, its prediction rows in row order (DataFrame ``groupby('label')`` groups)."""
    by_class = np.argsort(pred_class, kind="stable")  # [N]
    bounds = np.searchsorted(pred_class[by_class], np.arange(num_classes + 1))  # [C + 1]
    return [by_class[bounds[c] : bounds[c + 1]] for c in range(num_classes)]


def normalized_precision_recall(
    tp: np.ndarray, num_gt: int, avg_n: float
) -> tuple[np.ndarray, np.ndarray]:
    """tp [T, n] bool in ranking order → (precision [T, n], recall [T, n]), DETAD's float ops."""
    tp_cum = np.cumsum(tp, axis=1).astype(np.float64)  # [T, n]
    fp_cum = np.cumsum(~tp, axis=1).astype(np.float64)  # [T, n]
    recall = tp_cum / float(num_gt)
    precision = recall * avg_n / (recall * avg_n + fp_cum)
    return precision, recall


def interpolated_ap_from(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC-2011 interpolated AP of each row: [T, n] precision, recall → [T]."""
    t = len(precision)
    zeros, ones = np.zeros((t, 1)), np.ones((t, 1))
    mprec = np.hstack([zeros, precision, zeros])  # [T, n + 2]
    mrec = np.hstack([zeros, recall, ones])  # [T, n + 2]
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]  # envelope from the right
    step = mrec[:, 1:] != mrec[:, :-1]  # [T, n + 1]
    area = (mrec[:, 1:] - mrec[:, :-1]) * mprec[:, 1:]  # [T, n + 1]
    # one np.sum over exactly the selected terms per row: the same rounding as DETAD's
    return np.array([np.sum(area[i][step[i]]) for i in range(t)])


def normalized_ap(
    tp: np.ndarray, num_gt: int, avg_n: float, min_precision: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """DETAD's normalised AP of one class.

    Args:
        tp: [T, n] bool, the class's predictions in ranking order; num_gt > 0; avg_n: DETAD's
            average number of instances per class; min_precision: DETAD's
            ``minimum_normalized_precision_threshold_for_detection``: true positives where the
            running normalised precision is <= it become false positives first.
    Returns:
        (ap [T], tp [T, n] after that discarding).
    """
    precision, recall = normalized_precision_recall(tp, num_gt, avg_n)
    discard = precision <= min_precision  # [T, n]
    if (discard & tp).any():
        tp = tp & ~discard
        precision, recall = normalized_precision_recall(tp, num_gt, avg_n)
    return interpolated_ap_from(precision, recall), tp
