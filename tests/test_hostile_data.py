"""Data-side hostile inputs (issue 15): the checks behind the docs/errors.md rows, at their edges."""

from pathlib import Path

import numpy as np
import pytest
import torch

from libs.core.annotations import MAX_VIDEO_FRAMES, video_length_problem
from libs.core.structures import Detections
from libs.datasets.features import find_problem
from libs.inference.raw import MAX_CANDIDATES_PER_VIDEO, RawPredictions, VideoMeta, candidate_bound
from libs.inference.score_fusion import check_class_scores, video_class_scores

REPO = Path(__file__).resolve().parents[1]


def _raw(ids, num, config=None) -> RawPredictions:
    dets = [Detections(v, torch.rand(num, 2).sort(1)[0], torch.rand(num), torch.zeros(num, dtype=torch.long),
                       "grid") for v in ids]
    metas = [VideoMeta(v, 30.0, 30.0, 8.0, 16.0) for v in ids]
    return RawPredictions(dets, metas, {0: "a"}, config or {})


def test_candidate_bound_is_the_models_output_size():
    from libs.core.config import config_to_dict, load_config

    cfg = config_to_dict(load_config(str(REPO / "configs" / "custom_example.yaml")))
    assert candidate_bound(cfg) == (2000 * 5, "test.pre_nms_topk 2000 x 5 pyramid levels")
    assert candidate_bound({})[0] == MAX_CANDIDATES_PER_VIDEO
    assert candidate_bound({"test": "x", "model": None})[0] == MAX_CANDIDATES_PER_VIDEO


def test_raw_file_at_the_bound_loads_and_one_more_is_refused(tmp_path):
    config = {"test": {"pre_nms_topk": 4}, "model": {"arch": [2, 1, 2]}}  # 4 x 3 levels = 12
    _raw(["a", "b"], 12, config).save(tmp_path / "ok.pt")
    assert [len(d) for d in RawPredictions.load(tmp_path / "ok.pt").detections] == [12, 12]
    _raw(["a", "b"], 13, config).save(tmp_path / "big.pt")
    with pytest.raises(ValueError, match=r"video 'a' holds 13 candidates, more than the model can produce \(12"):
        RawPredictions.load(tmp_path / "big.pt")


def test_raw_predictions_refuse_a_video_twice():
    with pytest.raises(ValueError, match="video 'a' appears twice"):
        _raw(["a", "b", "a"], 2)


def test_video_length_limit():
    assert video_length_problem(3600.0, 30.0) is None
    assert video_length_problem(MAX_VIDEO_FRAMES / 30.0, 30.0) is None  # at the limit
    assert "more than any real video" in video_length_problem(MAX_VIDEO_FRAMES / 30.0 * 1.01, 30.0)
    assert "inf frames" in video_length_problem(1e308, 30.0)
    assert "inf frames" in video_length_problem(30.0, 1e308)


@pytest.mark.parametrize("dtype", [np.complex64, np.dtype([("a", "f4")]), np.dtype("U3")])
def test_features_of_non_numeric_dtype_are_a_problem(dtype):
    problem = find_problem(np.zeros((5, 4), dtype=dtype), 4)
    assert problem is not None and problem.kind == "dtype"
    for ok in (np.float16, np.float64, np.int32):
        assert find_problem(np.zeros((5, 4), dtype=ok), 4) is None


def test_class_scores_shapes():
    assert video_class_scores(check_class_scores([[0.2, 0.8]], "v", "s.json")).tolist() == [0.2, 0.8]
    assert check_class_scores([3, 1.5], "v", "s.json") == [3, 1.5]  # logits: softmaxed later
    for bad in (0.5, "0.5", {"a": 1}, [], [[]], [[0.1], [0.2]], [[[0.1]]], [True], [float("inf")]):
        with pytest.raises(ValueError, match="s.json: video 'v': expected a list of class scores"):
            check_class_scores(bad, "v", "s.json")
