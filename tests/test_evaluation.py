"""ActivityNet detection mAP: hand-computed cases, vectorised vs loop parity, input validation.

Expected values are computed by hand from the ActivityNet rules (greedy matching by score,
VOC-2011 interpolated AP, mean over the split's GT classes); no reference code is used.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from libs.core.structures import Detections
from libs.evaluation import DetectionMAP, EvalResult, detections_to_results

TIOUS = [0.3, 0.5, 0.7]
NAMES = {0: "Jump", 1: "Run", 2: "Swim"}


IDS = {n: i for i, n in NAMES.items()}


def make_gt(videos: dict, subset: str = "Validation", other: dict | None = None) -> dict:
    """videos: {video_id: [(label, start, end)]} in ``subset``; ``other`` goes to "Training"."""

    def entry(anns, sub):
        return {
            "subset": sub,
            "duration": 100.0,
            "annotations": [
                {"label": lab, "segment": [s, e], "label_id": IDS[lab]} for lab, s, e in anns
            ],
        }

    db = {vid: entry(anns, subset) for vid, anns in videos.items()}
    db.update({vid: entry(anns, "Training") for vid, anns in (other or {}).items()})
    return {"version": "test", "database": db}


def make_results(preds: dict) -> dict:
    """preds: {video_id: [(label, start, end, score), ...]}."""
    return {
        "version": "VERSION 1.3",
        "external_data": {},
        "results": {
            vid: [{"label": lab, "segment": [s, e], "score": sc} for lab, s, e, sc in lst]
            for vid, lst in preds.items()
        },
    }


def to_detections(preds: dict) -> list[Detections]:
    """The same predictions as per-video `Detections` (float32 tensors, integer label ids)."""
    return [
        Detections(
            vid,
            torch.tensor([[s, e] for _, s, e, _ in lst]),
            torch.tensor([sc for *_, sc in lst]),
            torch.tensor([IDS[lab] for lab, *_ in lst]),
            unit="sec",
        )
        for vid, lst in preds.items()
    ]


def evaluate(gt: dict, preds: dict, **kw) -> EvalResult:
    return DetectionMAP(gt, "validation", TIOUS, **kw).evaluate(make_results(preds))


TWO_GT = make_gt({"a": [("Jump", 0.0, 10.0), ("Jump", 20.0, 30.0)]})


# ---------------------------------------------------------------- hand-computed cases


def test_perfect_predictions_give_map_one():
    gt = make_gt({"a": [("Jump", 0, 10), ("Run", 5, 15)], "b": [("Swim", 1, 2), ("Jump", 40, 60)]})
    preds = {
        vid: [(a["label"], *a["segment"], 1.0) for a in v["annotations"]]
        for vid, v in gt["database"].items()
    }
    r = evaluate(gt, preds)
    assert r.mAP == [1.0] * 3 and r.average_mAP == 1.0
    assert r.ap.shape == (3, 3) and r.class_names == ["Jump", "Run", "Swim"]


def test_one_fp_above_the_tps_costs_a_third():
    # ranking FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 → envelope 2/3 → AP = 2/3.
    tps = [("Jump", 0, 10, 0.8), ("Jump", 20, 30, 0.7)]
    assert evaluate(TWO_GT, {"a": tps}).average_mAP == 1.0
    r = evaluate(TWO_GT, {"a": [("Jump", 40, 50, 0.9)] + tps})
    assert r.mAP == pytest.approx([2 / 3] * 3, abs=1e-15)


def test_fp_below_all_tps_costs_nothing():
    r = evaluate(
        TWO_GT, {"a": [("Jump", 0, 10, 0.8), ("Jump", 20, 30, 0.7), ("Jump", 40, 50, 0.1)]}
    )
    assert r.average_mAP == 1.0


@pytest.mark.parametrize("video", ["not_in_json", "train_video", "b"])
def test_prediction_on_video_without_gt_of_its_class_is_fp(video):
    # "train_video" is in the JSON but in another subset; "b" is in the split with only Run GT.
    gt = make_gt(
        {"a": [("Jump", 0, 10), ("Jump", 20, 30)], "b": [("Run", 0, 10)]},
        other={"train_video": [("Jump", 0, 10)]},
    )
    r = evaluate(
        gt, {video: [("Jump", 0, 10, 0.9)], "a": [("Jump", 0, 10, 0.8), ("Jump", 20, 30, 0.7)]}
    )
    assert r.ap[:, 0] == pytest.approx([2 / 3] * 3, abs=1e-15)  # Jump; Run has no prediction → 0
    assert r.ap[:, 1].tolist() == [0.0] * 3


def test_score_ties_follow_numpy_argsort_order():
    # Official ranking: scores.argsort()[::-1] over the class's predictions in results order.
    # With a TP and an FP of equal score the FP either ranks first (AP 1/2) or second (AP 1).
    gt = make_gt({"a": [("Jump", 0, 10)]})
    first = int(np.array([0.5, 0.5]).argsort()[::-1][0])  # numpy puts index 1 first
    for order in (
        [("Jump", 0, 10, 0.5), ("Jump", 50, 60, 0.5)],
        [("Jump", 50, 60, 0.5), ("Jump", 0, 10, 0.5)],
    ):
        fp_first = order[first][1] == 50
        assert evaluate(gt, {"a": order}).average_mAP == (0.5 if fp_first else 1.0)


def test_duplicate_predictions_count_separately():
    # ranks: TP(.9), duplicate FP(.8), TP(.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # → AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    r = evaluate(TWO_GT, {"a": [("Jump", 0, 10, 0.9), ("Jump", 0, 10, 0.8), ("Jump", 20, 30, 0.7)]})
    assert r.mAP == pytest.approx([5 / 6] * 3, abs=1e-15)


def test_threshold_decides_tp():
    # prediction [0, 6] vs GT [0, 10]: tIoU 0.6 → TP at 0.3 and 0.5, FP at 0.7 (AP 0).
    r = evaluate(make_gt({"a": [("Jump", 0, 10)]}), {"a": [("Jump", 0, 6, 0.9)]})
    assert r.mAP == [1.0, 1.0, 0.0]
    assert r.average_mAP == pytest.approx(2 / 3)


def test_gt_taken_by_higher_score_falls_through_to_next_gt():
    # GT [0,10] and [4,14]; both predictions overlap the first best. The second walks on to
    # the next GT by tIoU (its tIoU with [4,14] is 6/14 ≈ 0.43 → TP at 0.3 only).
    gt = make_gt({"a": [("Jump", 0, 10), ("Jump", 4, 14)]})
    r = evaluate(gt, {"a": [("Jump", 0, 10, 0.9), ("Jump", 0, 10, 0.8)]})
    assert r.mAP == [1.0, 0.5, 0.5]


def test_class_without_predictions_gets_zero_and_counts_in_mean():
    gt = make_gt({"a": [("Jump", 0, 10), ("Run", 20, 30)]})
    r = evaluate(gt, {"a": [("Jump", 0, 10, 0.9)]})
    assert r.ap[:, 1].tolist() == [0.0] * 3 and r.mAP == [0.5] * 3


def test_empty_predictions_give_zero():
    assert evaluate(TWO_GT, {}).mAP == [0.0] * 3
    assert DetectionMAP(TWO_GT, "validation", TIOUS).evaluate([]).average_mAP == 0.0


def test_class_order_is_first_appearance_in_split():
    gt = make_gt(
        {"a": [("Swim", 0, 10), ("Jump", 20, 30)], "b": [("Run", 0, 1), ("Swim", 5, 6)]},
        other={"t": [("Run", 0, 1)]},
    )
    assert DetectionMAP(gt, "validation", TIOUS).class_names == ["Swim", "Jump", "Run"]


def test_remove_duplicates_option():
    # GT listed twice (within 1e-3 s) plus a zero-length event: officially npos = 3 → recall 1/3.
    gt = make_gt({"a": [("Jump", 0, 10), ("Jump", 0.0005, 10.0005), ("Jump", 5, 5)]})
    preds = {"a": [("Jump", 0, 10, 0.9)]}
    assert evaluate(gt, preds).mAP == pytest.approx([1 / 3] * 3)
    assert evaluate(gt, preds, remove_duplicates=True).mAP == [1.0] * 3


def test_blocked_videos_leave_gt_and_predictions():
    gt = make_gt({"a": [("Jump", 0, 10)], "b": [("Jump", 0, 10)]})
    preds = {"a": [("Jump", 0, 10, 0.9)], "b": [("Jump", 50, 60, 0.95)]}
    assert evaluate(gt, preds).average_mAP == pytest.approx(0.25)  # FP first, recall 1/2
    assert evaluate(gt, preds, blocked_videos=["b"]).average_mAP == 1.0


def test_split_is_case_insensitive_and_may_be_a_list():
    gt = make_gt({"a": [("Jump", 0, 10)]}, other={"t": [("Run", 0, 10)]})
    assert DetectionMAP(gt, "VALIDATION", TIOUS).class_names == ["Jump"]
    assert DetectionMAP(gt, ["validation", "training"], TIOUS).class_names == ["Jump", "Run"]


# ---------------------------------------------------------------- label names / ids / Detections


def _random_case(seed: int) -> tuple[dict, dict]:
    """6 GT videos with 4 events each; 7 prediction videos (one without GT) with 12 each."""
    rng = np.random.default_rng(seed)

    def events(n):
        starts = rng.integers(0, 40, n).astype(float)
        return [(NAMES[int(rng.integers(3))], s, s + float(rng.integers(1, 9))) for s in starts]

    gt = make_gt({f"v{i}": events(4) for i in range(6)})
    preds = {f"v{i}": [(*e, float(rng.integers(0, 5)) / 4) for e in events(12)] for i in range(7)}
    return gt, preds


def test_label_names_ids_and_detections_give_equal_results():
    gt, preds = _random_case(0)
    evaluator = DetectionMAP(gt, "validation", np.linspace(0.5, 0.95, 10))
    by_name = evaluator.evaluate(make_results(preds))
    by_id = evaluator.evaluate(
        make_results({v: [(IDS[lab], *rest) for lab, *rest in lst] for v, lst in preds.items()})
    )
    by_dets = evaluator.evaluate(to_detections(preds))
    assert 0 < by_name.average_mAP < 1
    for other in (by_id, by_dets):
        assert np.array_equal(other.ap, by_name.ap) and other.average_mAP == by_name.average_mAP


def test_integer_labels_without_label_id_index_the_class_order(caplog):
    gt = make_gt({"a": [("Run", 0, 10), ("Jump", 20, 30)]})
    with caplog.at_level("WARNING", logger="libs.evaluation.predictions"):
        DetectionMAP(gt, "validation", TIOUS).evaluate(make_results({"a": [(0, 20, 30, 0.8)]}))
    assert not caplog.text  # label_id in the ground truth: integers are those ids
    for ann in gt["database"]["a"]["annotations"]:
        del ann["label_id"]
    evaluator = DetectionMAP(gt, "validation", TIOUS)  # class order: Run (0), Jump (1)
    with caplog.at_level("WARNING", logger="libs.evaluation.predictions"):
        r = evaluator.evaluate(make_results({"a": [(0, 0, 10, 0.9), (1, 20, 30, 0.8)]}))
    assert r.average_mAP == 1.0
    assert caplog.text.count("has no label_id: each integer is taken as the index") == 1
    assert "0=Run, 1=Jump" in caplog.text


def test_detections_to_results_keeps_full_precision():
    det = Detections(
        "v", torch.tensor([[0.1, 2.3]]), torch.tensor([0.123456789]), torch.tensor([2]), unit="sec"
    )
    out = detections_to_results([det, Detections.empty("w", unit="sec")], NAMES)
    assert set(out) == {"version", "results", "external_data"}
    (entry,) = out["results"]["v"]
    assert out["results"]["w"] == []
    assert entry["label"] == "Swim" and entry["score"] == float(torch.tensor(0.123456789))
    assert entry["segment"] == [float(torch.tensor(0.1)), float(torch.tensor(2.3))]
    assert all(type(x) is float for x in entry["segment"] + [entry["score"]])


def test_detections_round_trip_through_results_dict():
    gt, preds = _random_case(1)
    dets = to_detections(preds)
    evaluator = DetectionMAP(gt, "validation", TIOUS)
    assert np.array_equal(
        evaluator.evaluate(dets).ap, evaluator.evaluate(detections_to_results(dets, NAMES)).ap
    )


# ---------------------------------------------------------------- bad inputs


def test_gt_without_database_names_the_file(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text('{"version": 1}')
    with pytest.raises(ValueError, match=r"gt\.json.*'database'"):
        DetectionMAP(str(path), "test", TIOUS)


def test_empty_split_lists_available_subsets():
    with pytest.raises(ValueError, match=r"no video of split \['test'\].*\['Validation'\]"):
        DetectionMAP(TWO_GT, "test", TIOUS)


def test_bad_gt_segment_names_the_video():
    gt = make_gt({"a": [("Jump", 0, 10)]})
    gt["database"]["a"]["annotations"][0]["segment"] = [1.0]
    with pytest.raises(ValueError, match="video 'a'.*segment"):
        DetectionMAP(gt, "validation", TIOUS)


def test_results_without_results_key():
    with pytest.raises(ValueError, match="'results'"):
        DetectionMAP(TWO_GT, "validation", TIOUS).evaluate({"version": "x"})


@pytest.mark.parametrize(
    "entry, pattern",
    [
        ({"label": "Jump", "segment": [1, 2, 3], "score": 0.5}, "video 'a'.*segment"),
        ({"label": "Jump", "segment": ["1", 2], "score": 0.5}, "video 'a'.*segment"),
        ({"label": "Jump", "segment": [1, 2], "score": float("nan")}, "video 'a'.*finite"),
        ({"label": "Jump", "segment": [1, 2], "score": "high"}, "video 'a'.*score"),
        ({"label": "Dance", "segment": [1, 2], "score": 0.5}, "video 'a'.*unknown label 'Dance'"),
        ({"label": 17, "segment": [1, 2], "score": 0.5}, "video 'a'.*unknown label id 17"),
        ({"segment": [1, 2], "score": 0.5}, "video 'a'.*'label'"),
    ],
)
def test_bad_prediction_entries(entry, pattern):
    with pytest.raises(ValueError, match=pattern):
        DetectionMAP(TWO_GT, "validation", TIOUS).evaluate({"results": {"a": [entry]}})


def test_detections_must_be_in_seconds():
    det = Detections("a", torch.zeros(1, 2), torch.ones(1), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="video 'a'.*unit 'sec'"):
        DetectionMAP(TWO_GT, "validation", TIOUS).evaluate([det])


def test_bad_thresholds():
    with pytest.raises(ValueError, match="tiou_thresholds"):
        DetectionMAP(TWO_GT, "validation", [])


# ---------------------------------------------------------------- segment tIoU (moved from test_segments)


def test_pair_tiou_matches_loop():
    from libs.evaluation.matching import pair_tiou

    rng = np.random.default_rng(0)
    a = np.sort(rng.random((7, 2)), axis=1) * 10  # [7, 2]
    b = np.sort(rng.random((5, 2)), axis=1) * 10  # [5, 2]
    got = pair_tiou(a, np.broadcast_to(b, (7, 5, 2)))  # [7, 5]
    for i in range(7):
        for j in range(5):
            inter = max(0.0, min(a[i, 1], b[j, 1]) - max(a[i, 0], b[j, 0]))
            union = (a[i, 1] - a[i, 0]) + (b[j, 1] - b[j, 0]) - inter
            assert abs(float(got[i, j]) - float(inter / union)) < 1e-6


def test_pair_tiou_identical_disjoint_and_degenerate():
    from libs.evaluation.matching import pair_tiou

    seg = np.array([[1.0, 3.0]])
    cands = np.array([[[1.0, 3.0], [4.0, 5.0], [2.0, 2.0]]])
    assert pair_tiou(seg, cands)[0].tolist() == [1.0, 0.0, 0.0]
    # two empty segments: 0 / 0 is NaN, as in the official segment_iou (the matcher follows it)
    assert np.isnan(pair_tiou(np.array([[2.0, 2.0]]), np.array([[[2.0, 2.0]]]))).all()


def test_eval_bench_loop_reference_agrees_with_the_protocol_evaluator(capsys):
    """tools/bench/eval_bench.py: the plain loop, the vectorised AP and evaluate() give one AP."""
    import argparse

    from tools.bench import eval_bench

    parser = argparse.ArgumentParser()
    eval_bench.add_args(parser)
    out = eval_bench.run(parser.parse_args(["--preds-per-video", "4", "--rounds", "1"]))
    assert out["identical"] and out["n_videos"] == 212 and 0 < out["average_mAP"] < 1
