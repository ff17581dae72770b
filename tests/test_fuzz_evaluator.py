"""Property-based tests (hypothesis) of the evaluator: mAP in [0, 1]; invariant to the video
order of the results dict without score ties; perfect predictions give 1; a prediction on a
video without GT never raises an AP. The parsers and kernels: tests/test_fuzz.py."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from libs.evaluation import DetectionMAP
from tests.test_fuzz import FUZZ, LABELS


# ============================================================================ the evaluator
TIOUS = [0.1, 0.3, 0.5, 0.7, 0.9]


@st.composite
def gt_and_predictions(draw, distinct_scores: bool = True):
    """GT of 1-4 split videos (+ one training video) and random predictions on them.

    Segments are on a 0.5 s grid (exact tIoU ties); scores are distinct when asked.
    """
    def seg():
        start = draw(st.integers(0, 100)) / 2
        return [start, start + draw(st.integers(1, 30)) / 2]

    database = {}
    for v in range(draw(st.integers(1, 4))):
        anns = [{"label": draw(st.sampled_from(LABELS)), "segment": seg()}
                for _ in range(draw(st.integers(0, 4)))]
        database[f"v{v}"] = {"subset": "validation", "annotations": anns}
    # every label is known to the file (a known class without GT in the split is ignored)
    database["train"] = {"subset": "training", "annotations": [{"label": lab, "segment": [1.0, 2.0]}
                                                               for lab in LABELS]}  # fmt: skip
    assume(any(v["annotations"] for k, v in database.items() if k != "train"))
    vids = [k for k in database if k != "train"]
    n = draw(st.integers(0, 12))
    if distinct_scores:
        scores = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
        scores = [s / 10_001 for s in scores]
    else:
        scores = draw(st.lists(st.sampled_from([0.2, 0.5, 0.8]), min_size=n, max_size=n))
    preds: dict[str, list] = {}
    for score in scores:
        entry = {"label": draw(st.sampled_from(LABELS)), "segment": seg(), "score": score}
        preds.setdefault(draw(st.sampled_from(vids)), []).append(entry)
    return {"database": database}, preds


def _evaluate(gt: dict, preds: dict):
    return DetectionMAP(gt, "validation", TIOUS).evaluate({"results": preds})


@FUZZ
@given(case=gt_and_predictions(distinct_scores=False), seed=st.integers(0, 2**16))
def test_map_is_a_fraction(case, seed):
    gt, preds = case
    result = _evaluate(gt, preds)
    assert result.ap.shape == (len(TIOUS), len(result.class_names))
    assert ((result.ap >= 0) & (result.ap <= 1)).all()
    assert all(0 <= m <= 1 for m in result.mAP) and 0 <= result.average_mAP <= 1
    assert (np.diff(result.mAP) <= 1e-12).all()  # a stricter tIoU never helps


@FUZZ
@given(case=gt_and_predictions(), seed=st.integers(0, 2**16))
def test_map_ignores_the_video_order_of_the_results(case, seed):
    gt, preds = case
    shuffled = list(preds.items())
    random.Random(seed).shuffle(shuffled)
    a, b = _evaluate(gt, preds), _evaluate(gt, dict(shuffled))
    assert np.array_equal(a.ap, b.ap) and a.mAP == b.mAP


@FUZZ
@given(case=gt_and_predictions(), seed=st.integers(0, 2**16))
def test_perfect_predictions_give_one(case, seed):
    gt, _ = case
    rng = random.Random(seed)
    preds = {
        vid: [{"label": a["label"], "segment": a["segment"], "score": rng.random()} for a in v["annotations"]]
        for vid, v in gt["database"].items()
        if v["subset"] == "validation"
    }
    result = _evaluate(gt, preds)
    assert result.mAP == [1.0] * len(TIOUS) and result.average_mAP == 1.0


@FUZZ
@given(
    case=gt_and_predictions(),
    where=st.sampled_from(["unknown", "train", "empty split video"]),
    label=st.sampled_from(LABELS),
    score=st.integers(0, 10_001),
    start=st.integers(0, 100),
)
def test_a_prediction_on_a_video_without_gt_never_raises_ap(case, where, label, score, start):
    gt, preds = case
    assume(preds)  # a results file on no video of the split is an error, tested elsewhere
    vid = {"unknown": "not_in_json", "train": "train", "empty split video": "empty"}[where]
    if vid == "empty":
        gt["database"]["empty"] = {"subset": "validation", "annotations": []}
    scores = {e["score"] for lst in preds.values() for e in lst}
    extra = {"label": label, "segment": [start / 2, start / 2 + 5.0], "score": (score + 0.5) / 10_002}
    assume(extra["score"] not in scores)  # no tie: a tie may reorder the others (numpy argsort)
    before = _evaluate(gt, preds)
    after = _evaluate(gt, {**preds, vid: preds.get(vid, []) + [extra]})
    assert (after.ap <= before.ap + 1e-12).all()
    assert all(m1 <= m0 + 1e-12 for m0, m1 in zip(before.mAP, after.mAP))
