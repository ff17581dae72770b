"""The vectorised matcher (`libs.evaluation.matching.average_precision`) against a slow loop
reference that follows the ActivityNet evaluator one class, prediction and threshold at a time:
identical arrays on hypothesis cases and seeded numpy cases with many score and tIoU ties."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.evaluation.matching import average_precision


# ---------------------------------------------------------------- vectorised == slow loop


def loop_ap(pred_seg, pred_vid, pred_cls, scores, gt_seg, gt_vid, gt_cls, thresholds, num_classes):
    """Slow reference: one class, one prediction, one threshold at a time."""
    ap = np.zeros((len(thresholds), num_classes))
    for c in range(num_classes):
        order = [i for i in range(len(scores)) if pred_cls[i] == c]
        if not order:
            continue
        order = [order[j] for j in np.array([scores[i] for i in order]).argsort()[::-1]]
        gt_rows = [g for g in range(len(gt_cls)) if gt_cls[g] == c]
        for t, thr in enumerate(thresholds):
            taken, tp = set(), []
            for i in order:
                cand = [g for g in gt_rows if gt_vid[g] == pred_vid[i] and pred_vid[i] >= 0]
                ious = []
                for g in cand:
                    inter = max(
                        0.0, min(pred_seg[i][1], gt_seg[g][1]) - max(pred_seg[i][0], gt_seg[g][0])
                    )
                    union = (
                        (gt_seg[g][1] - gt_seg[g][0]) + (pred_seg[i][1] - pred_seg[i][0]) - inter
                    )
                    ious.append(inter / union if union != 0 else math.nan)
                hit = False
                for j in np.array(ious, dtype=float).argsort()[::-1]:
                    if ious[j] < thr:
                        break
                    if cand[j] not in taken:
                        taken.add(cand[j])
                        hit = True
                        break
                tp.append(hit)
            ap[t, c] = loop_voc_ap(tp, len(gt_rows))
    return ap


def loop_voc_ap(tp: list, num_gt: int) -> float:
    tp_cum = np.cumsum(np.array(tp, dtype=float))
    fp_cum = np.cumsum(1.0 - np.array(tp, dtype=float))
    prec = [0.0] + list(tp_cum / (tp_cum + fp_cum)) + [0.0]
    rec = [0.0] + list(tp_cum / float(num_gt)) + [1.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    terms = [(rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1]]
    return float(np.sum(np.array(terms)))


@st.composite
def matching_case(draw):
    """Few videos/classes and a coarse grid, so groups are big and score/tIoU ties common."""
    n_vid, n_cls = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    seg = st.tuples(st.integers(0, 12), st.integers(0, 6)).map(lambda t: (t[0], t[0] + t[1]))
    gt = st.tuples(st.integers(0, n_vid - 1), st.integers(0, n_cls - 1), seg)
    pred = st.tuples(st.integers(-1, n_vid - 1), st.integers(0, n_cls - 1), seg, st.integers(0, 4))
    gt, pred = draw(st.lists(gt, min_size=1, max_size=40)), draw(st.lists(pred, max_size=80))
    thresholds = [[0.5], [0.1, 0.3, 0.5, 0.7], [0.0, 0.5, 1.0], np.linspace(0.5, 0.95, 10)]

    def column(k, dtype):
        return np.array([p[k] for p in pred], dtype=dtype)

    return (
        tuple(np.array([g[k] for g in gt]) for k in range(3)),
        (column(0, int), column(1, int), column(2, float).reshape(-1, 2), column(3, float) / 4),
        np.asarray(draw(st.sampled_from(thresholds))),
    )


def numpy_case(seed: int):
    """The same kind of case from a numpy seed (bigger on average than hypothesis' examples)."""
    rng = np.random.default_rng(seed)
    n_vid, n_cls = rng.integers(1, 3, 2)
    n_gt, n_pred = int(rng.integers(1, 40)), int(rng.integers(0, 80))

    def segments(n):  # [n, 2] on an integer grid
        start = rng.integers(0, 12, n).astype(float)
        return np.stack([start, start + rng.integers(0, 7, n)], axis=1)

    gt = (rng.integers(0, n_vid, n_gt), rng.integers(0, n_cls, n_gt), segments(n_gt))
    pred = (rng.integers(-1, n_vid, n_pred), rng.integers(0, n_cls, n_pred), segments(n_pred))
    return gt, (*pred, rng.integers(0, 5, n_pred) / 4), np.array([0.1, 0.3, 0.5, 0.7])


def check_against_loop(gt, pred, thresholds):
    """gt: (video [G], class [G], segments [G, 2]); pred: (video, class, segments, scores)."""
    (gt_vid, gt_cls, gt_seg), (pred_vid, pred_cls, pred_seg, scores) = gt, pred
    present = np.unique(gt_cls)  # the evaluator only knows classes with GT: renumber them
    remap = np.full(max(int(pred_cls.max(initial=0)), int(gt_cls.max())) + 1, -1)
    remap[present] = np.arange(len(present))
    keep = remap[pred_cls] >= 0
    preds = (pred_seg[keep].astype(float), pred_vid[keep], remap[pred_cls[keep]], scores[keep])
    gts = (gt_seg.astype(float), gt_vid, remap[gt_cls], thresholds, len(present))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = loop_ap(*preds, *gts)
    assert np.array_equal(average_precision(*preds, *gts), expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matching_case())
def test_vectorised_matches_loop_reference(case):
    check_against_loop(*case)


def test_vectorised_matches_loop_reference_seeded():
    for seed in range(150):
        check_against_loop(*numpy_case(seed))
