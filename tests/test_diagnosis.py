"""libs.diagnosis on small hand-made cases whose DETAD answers are worked out by hand below,
plus the building blocks against plain references (pandas itself, the evaluator, a loop)."""

import json
import logging
from fractions import Fraction as F

import numpy as np
import pandas as pd
import pytest

from libs.diagnosis import diagnose, parse_bins, protocol_bins
from libs.diagnosis.characteristics import bucket_index
from libs.diagnosis.matching import descending_pandas, nlargest, normalized_ap
from libs.evaluation.matching import class_rankings, match_gt, match_predictions, pair_tiou

# Hand case. THUMOS-14 protocol: tIoU 0.5, min tIoU 0.1, top 10 N_c, bins of the module doc.
#   v1 (100 s): A1 [10,20]  A2 [30,40]  B1 [50,60]  A3 [70,72]       v2 (50 s): B2 [0,10]
# N_A = 3, N_B = 2, 5 GT over 2 classes: DETAD's N = 2.5.
# prediction          score  match (tIoU)            unmatched: best GT of the video -> type
# p0 v1 A [10,20]     .9     A1 (1.0)      TP
# p1 v1 A [11,20]     .8     A1 taken       A1 0.9, same label                -> Double Detection
# p2 v1 A [50,60]     .7     -              B1 1.0, other label               -> Wrong Label
# p3 v1 A [30,36]     .6     A2 (0.6)      TP
# p4 v2 B [0,4]       .5     B2 0.4 < .5    B2 0.4 >= .1, same label          -> Localization
# p5 v1 B [36,52]     .4     B1 2/24        A2 4/22 = .18 >= .1, other label  -> Confusion
# p6 v2 B [30,40]     .3     -              B2 0                              -> Background
# p7 v1 B [50,59]     .2     B1 (0.9)      TP
GT = {
    "database": {
        "v1": {"subset": "Test", "duration": 100.0, "annotations": [
            {"label": "A", "segment": [10, 20]}, {"label": "A", "segment": [30, 40]},
            {"label": "B", "segment": [50, 60]}, {"label": "A", "segment": [70, 72]}]},
        "v2": {"subset": "Test", "duration": 50.0, "annotations": [
            {"label": "B", "segment": [0, 10]}]},
        "t1": {"subset": "Train", "duration": 10.0, "annotations": [
            {"label": "A", "segment": [1, 2]}]},
    }
}  # fmt: skip
PREDS = [("v1", "A", 10, 20, 0.9), ("v1", "A", 11, 20, 0.8), ("v1", "A", 50, 60, 0.7),
         ("v1", "A", 30, 36, 0.6), ("v2", "B", 0, 4, 0.5), ("v1", "B", 36, 52, 0.4),
         ("v2", "B", 30, 40, 0.3), ("v1", "B", 50, 59, 0.2)]  # fmt: skip


def results(preds):
    out = {}
    for vid, label, s, e, score in preds:
        out.setdefault(vid, []).append({"label": label, "segment": [s, e], "score": score})
    return {"results": out}


# Normalised AP, precision = r N / (r N + FP), VOC interpolation:
#   A (TP FP FP TP, N_A 3): precisions 1, 5/11, 5/17, 5/11 at recall 1/3,1/3,1/3,2/3
#       -> 1/3 * 1 + 1/3 * 5/11 = 16/33
#   B (FP FP FP TP, N_B 2): recall 1/2 at precision 1.25 / 4.25 = 5/17 -> 5/34
AP_A, AP_B = F(16, 33), F(5, 34)
BASE = (AP_A + AP_B) / 2
# removing an error type: A without p1 (or p2) = TP FP TP -> 1/3 + 1/3 * (5/3)/(5/3 + 1) = 13/24;
# B without p4, p5 or p6 = FP FP TP -> 1/2 * 1.25/3.25 = 5/26
GAIN = {
    "Double Detection Err": (F(13, 24) + AP_B) / 2 - BASE,
    "Wrong Label Err": (F(13, 24) + AP_B) / 2 - BASE,
    "Localization Err": (AP_A + F(5, 26)) / 2 - BASE,
    "Confusion Err": (AP_A + F(5, 26)) / 2 - BASE,
    "Background Err": (AP_A + F(5, 26)) / 2 - BASE,
}
# groups by score rank inside each class: A (N 3) p0 p1 p2 | p3;  B (N 2) p4 p5 | p6 p7
PROFILE_1G = {"True Positive": 0.2, "Double Detection Err": 0.2, "Wrong Label Err": 0.2,
              "Localization Err": 0.2, "Confusion Err": 0.2, "Background Err": 0.0}  # fmt: skip
PROFILE_2G = {"True Positive": 2 / 3, "Double Detection Err": 0.0, "Wrong Label Err": 0.0,
              "Localization Err": 0.0, "Confusion Err": 0.0, "Background Err": 1 / 3}  # fmt: skip
# characteristics: v1 rows coverage .1 (XL), length 10 (M), 4 instances (S); A3 coverage .02
# (XS, an edge: include_lowest / right-closed), length 2 (XS); B2 coverage .2 (XL), length 10
# (M), 1 instance (XS). Missed: A3 and B2.
FALSE_NEGATIVE = {
    "coverage": {"XS": 1.0, "S": None, "M": None, "L": None, "XL": 0.25},
    "length": {"XS": 1.0, "S": None, "M": 0.25, "L": None, "XL": None},
    "num-instances": {"XS": 1.0, "S": 0.25, "M": None, "L": None},
}
# sensitivity. coverage XS = {A3}: A's predictions matched elsewhere (p0, p3) are left out,
# p1 p2 are FPs -> 0. coverage XL = {A1 A2 B1 B2}: A with N_A 2: precisions 1, 5/9, 5/13, 5/9
# -> 1/2 + 1/2 * 5/9 = 7/9; B as before 5/34. #inst XS = {B2}: p7 (matched B1) left out -> 0.
# #inst S = {A1 A2 A3 B1}: A = 16/33; B with N 1: 2.5 / (2.5 + 3) = 5/11.
XL = float((F(7, 9) + AP_B) / 2)
SENSITIVITY = {
    "base": float(BASE),
    "coverage": {"XS": 0.0, "S": None, "M": None, "L": None, "XL": XL},
    "length": {"XS": 0.0, "S": None, "M": XL, "L": None, "XL": None},
    "num-instances": {"XS": 0.0, "S": float((AP_A + F(5, 11)) / 2), "M": None, "L": None},
}


def assert_close(got, want, path=""):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for k in want:
            assert_close(got[k], want[k], f"{path}/{k}")
    elif want is None:
        assert got is None, path
    else:
        assert got == pytest.approx(float(want), abs=1e-12), path


def test_hand_case_every_number():
    d = diagnose(GT, results(PREDS), "test", "thumos14")
    fp = d["false_positive"]
    assert d["tiou_thresholds"] == [0.5]
    assert fp["average_mAP_N"] == pytest.approx(float(BASE), abs=1e-12)
    assert_close(fp["average_mAP_N_gain"], {k: float(v) for k, v in GAIN.items()})
    assert_close(fp["profile"]["1G"], PROFILE_1G)
    assert_close(fp["profile"]["2G"], PROFILE_2G)
    assert all(fp["profile"][f"{k}G"] is None for k in range(3, 11))  # empty groups
    assert_close(d["false_negative"], FALSE_NEGATIVE)
    assert_close(d["sensitivity"], SENSITIVITY)
    per_class = {r["class"]: r for r in d["per_class"]}
    assert per_class["A"]["AP_N"] == pytest.approx(float(AP_A))
    assert per_class["A"]["AP"] == pytest.approx(0.5)  # plain: 1/3 * 1 + 1/3 * 1/2
    assert per_class["B"]["AP"] == pytest.approx(0.125)  # plain: 1/2 * 1/4
    assert d["counts"]["average_num_instance_per_class"] == 2.5


def test_augmented_characteristics_are_read_not_computed():
    gt = json.loads(json.dumps(GT))
    for video in gt["database"].values():
        for a in video["annotations"]:
            a["coverage"], a["length"], a["num-instances"] = 0.5, 100.0, 90  # all XL / L
    d = diagnose(gt, results(PREDS), "test", "thumos14")
    assert d["false_negative"]["coverage"] == {"XS": None, "S": None, "M": None, "L": None,
                                               "XL": pytest.approx(0.4)}  # fmt: skip
    assert d["false_negative"]["num-instances"]["L"] == pytest.approx(0.4)
    assert d["sensitivity"]["length"]["XL"] == pytest.approx(float(BASE))


def test_class_without_predictions_counts_zero_and_empty_groups_are_null():
    d = diagnose(GT, results(PREDS[:4]), "test", "thumos14")  # no prediction of B (DETAD crashes)
    assert d["sensitivity"]["base"] == pytest.approx(float(AP_A / 2))
    assert d["false_positive"]["average_mAP_N"] == pytest.approx(float(AP_A / 2))
    assert d["sensitivity"]["num-instances"]["XS"] == 0.0  # {B2}: class B, AP 0
    assert d["false_negative"]["num-instances"]["XS"] == 1.0
    assert d["false_positive"]["profile"]["1G"]["True Positive"] == pytest.approx(1 / 3)
    assert d["false_positive"]["profile"]["3G"] is None


def test_low_normalised_precision_detections_are_discarded_for_false_negatives_only():
    gt = {"database": {"v": {"subset": "val", "duration": 100.0,
                             "annotations": [{"label": "A", "segment": [0, 10]}]}}}  # fmt: skip
    for n_fp, missed in ((25, 1.0), (15, 0.0)):  # precision at the TP: 1/26 <= .05 < 1/16
        preds = [("v", "A", 50 + i, 51 + i, 0.9 - 0.01 * i) for i in range(n_fp)]
        d = diagnose(gt, results(preds + [("v", "A", 0, 10, 0.01)]), "val", "thumos14")
        assert d["false_negative"]["length"]["M"] == missed
        assert d["sensitivity"]["base"] == pytest.approx(1 / (1 + n_fp))  # recall 1, N 1
        # the false-negative discarding leaves the all-predictions run alone (its matches too)
        assert d["sensitivity"]["length"]["M"] == pytest.approx(1 / (1 + n_fp))
        assert d["per_class"][0]["AP"] == pytest.approx(1 / (1 + n_fp))
        assert d["false_positive"]["average_mAP_N"] == 0.0  # the TP is past the top 10
        assert d["false_positive"]["profile"]["1G"]["Background Err"] == 1.0
        assert d["false_positive"]["profile"]["10G"]["Background Err"] == 1.0


def test_video_outside_ground_truth_warns_and_all_its_predictions_are_background(caplog):
    extra = [("x9", "A", 0, 5, 0.95), ("x9", "A", 10, 20, 0.85)]
    with caplog.at_level(logging.WARNING):
        d = diagnose(GT, results(PREDS + extra), "test", "thumos14")
    assert "1 of its 3 videos are not in split" in caplog.text
    # A's top 3 = x9, p0, x9 -> 1G: TP p0; BG x9 x9 (DETAD would compare the second x9
    # prediction with the ground truth of another video); B p4 Loc, p5 Conf
    prof = d["false_positive"]["profile"]["1G"]
    assert prof["Background Err"] == pytest.approx(2 / 5)
    assert prof["True Positive"] == pytest.approx(1 / 5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["v1"][0].update(label="Dance"), "video 'v1': unknown label 'Dance'"),
        (lambda r: r["v1"][0].update(score=float("nan")), "'score' must be a finite number"),
        (lambda r: r.clear() or r.update(zz=[]), "none of its 1 videos is in split"),
    ],
)
def test_bad_results_give_the_evaluators_errors(change, message):
    res = results(PREDS)
    change(res["results"])
    with pytest.raises(ValueError, match=message):
        diagnose(GT, res, "test", "thumos14")


def test_empty_results_warn_and_give_zeros(caplog):
    with caplog.at_level(logging.WARNING):
        d = diagnose(GT, {"results": {}}, "test", "thumos14")
    assert "no predictions" in caplog.text
    assert d["sensitivity"]["base"] == 0.0 and d["false_positive"]["average_mAP_N"] == 0.0
    assert all(v is None for v in d["false_positive"]["profile"].values())
    assert d["false_negative"]["coverage"]["XL"] == 1.0
    assert all(g == 0.0 for g in d["false_positive"]["average_mAP_N_gain"].values())


def test_degenerate_ground_truth_is_dropped_as_detad_does(caplog):
    gt = json.loads(json.dumps(GT))
    gt["database"]["v2"]["annotations"].append({"label": "B", "segment": [5, 5]})
    with caplog.at_level(logging.WARNING):
        d = diagnose(gt, results(PREDS), "test", "thumos14")
    assert "1 annotations dropped as DETAD does" in caplog.text
    assert "kept (official semantics)" not in caplog.text
    assert d["sensitivity"]["base"] == pytest.approx(float(BASE))


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown protocol 'thumos'"):
        diagnose(GT, results(PREDS), "test", "thumos")
    with pytest.raises(ValueError, match="bins of 'length' must be increasing"):
        diagnose(GT, results(PREDS), "test", bins={"length": ([3, 1], ["a"])})
    with pytest.raises(ValueError, match="'agreement'; this characteristic cannot be computed"):
        diagnose(GT, results(PREDS), "test", bins={"agreement": ([0, 1], ["all"])})
    gt = json.loads(json.dumps(GT))
    del gt["database"]["v2"]["duration"]
    with pytest.raises(ValueError, match="video 'v2' has no positive 'duration'"):
        diagnose(gt, results(PREDS), "test")
    gt["database"]["v2"]["duration"] = 10**400  # JSON allows it; float() cannot hold it
    with pytest.raises(ValueError, match="video 'v2' has no positive 'duration'"):
        diagnose(gt, results(PREDS), "test")


def test_parse_bins():
    want = ("length", ([0, 5, float("inf")], ["S", "L"]))
    assert parse_bins("length=0,5,inf:S,L", "thumos14") == want
    assert parse_bins("num-instances=-1,2,3,4,inf", "thumos14")[1][1] == ["XS", "S", "M", "L"]
    for bad in ("length", "length=1", "length=0,1,2"):
        with pytest.raises(ValueError, match="--bins"):
            parse_bins(bad, "thumos14")
    assert protocol_bins("activitynet")["length"][0].tolist()[-2] == 180


def test_bucket_index_is_pandas_cut_include_lowest():
    rng = np.random.default_rng(0)
    edges = np.array([0, 0.02, 0.04, 0.06, 0.08, 1])
    values = np.concatenate([rng.random(200) * 1.2 - 0.1, edges, [np.nan]])
    want = pd.cut(values, bins=edges, labels=False, include_lowest=True)
    np.testing.assert_array_equal(bucket_index(values, edges), np.nan_to_num(want, nan=-1))


def test_orderings_match_pandas():
    rng = np.random.default_rng(1)
    for n in (1, 7, 40, 300):
        scores = np.round(rng.random(n), 1)  # many ties
        df = pd.DataFrame({"score": scores})
        want = df.sort_values(by="score", ascending=False).index.to_numpy()
        np.testing.assert_array_equal(descending_pandas(scores), want)
        for k in (1, n // 3, n, n + 5):
            want = df.nlargest(n=k, columns="score").index.to_numpy()
            if k >= n:  # pandas < 3 (DETAD's) sorts the whole column with sort_values there
                want = df.sort_values(by="score", ascending=False).index.to_numpy()
            np.testing.assert_array_equal(nlargest(scores, k), want)


def test_match_gt_agrees_with_the_evaluator_and_is_a_valid_matching():
    rng = np.random.default_rng(2)
    n, g, c, v = 400, 60, 3, 5
    gs = rng.uniform(0, 50, g)
    gt_seg = np.stack([gs, gs + rng.uniform(1, 10, g)], 1)
    gt_video, gt_class = np.sort(rng.integers(v, size=g)), rng.integers(c, size=g)
    j = rng.integers(g, size=n)
    pred_seg = gt_seg[j] + rng.normal(0, 2, (n, 2))
    pred_video = np.where(rng.random(n) < 0.9, gt_video[j], -1)
    pred_class, scores = rng.integers(c, size=n), np.round(rng.random(n), 2)
    rank = np.zeros(n, dtype=np.int64)
    for ranked in class_rankings(pred_class, scores, c):
        rank[ranked] = np.arange(len(ranked))
    thr = np.array([0.3, 0.5, 0.7])
    args = (pred_seg, pred_video, pred_class, rank, gt_seg, gt_video, gt_class, thr, c)
    matched = match_gt(*args)
    np.testing.assert_array_equal(matched >= 0, match_predictions(*args))
    for t in range(len(thr)):
        rows = np.flatnonzero(matched[t] >= 0)
        m = matched[t, rows]
        assert len(np.unique(m)) == len(m)  # a GT is taken once
        assert (gt_class[m] == pred_class[rows]).all() and (gt_video[m] == pred_video[rows]).all()
        tiou = pair_tiou(pred_seg[rows], gt_seg[m][:, None])[:, 0]
        assert (tiou >= thr[t]).all()


def loop_normalized_ap(tp, num_gt, avg_n):
    """Plain loop of DETAD's normalised AP (one threshold)."""
    prec, rec, n_tp, n_fp = [], [], 0, 0
    for hit in tp:
        n_tp, n_fp = n_tp + hit, n_fp + (not hit)
        r = n_tp / num_gt
        prec.append(r * avg_n / (r * avg_n + n_fp))
        rec.append(r)
    p, r = [0.0] + prec + [0.0], [0.0] + rec + [1.0]
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    return sum((r[i] - r[i - 1]) * p[i] for i in range(1, len(r)) if r[i] != r[i - 1])


def test_normalized_ap_against_a_loop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n, num_gt = int(rng.integers(0, 30)), int(rng.integers(1, 10))
        tp = rng.random((2, n)) < 0.3
        tp[:, np.cumsum(tp, axis=1)[0] > num_gt] = False
        avg_n = float(rng.uniform(0.5, 20))
        ap, kept = normalized_ap(tp, num_gt, avg_n)
        np.testing.assert_array_equal(kept, tp)
        for t in range(2):
            assert ap[t] == pytest.approx(loop_normalized_ap(tp[t].tolist(), num_gt, avg_n))
