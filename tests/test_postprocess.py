"""Post-processing (NMS dispatch, grid -> seconds, clamping) and external score fusion."""

import json
import math

import pytest
import torch

from libs.core.config import TestCfg as InferCfg  # aliased: pytest would try to collect Test*
from libs.core.structures import Detections, VideoSample
from libs.inference.postprocess import postprocess, postprocess_video
from libs.inference.score_fusion import fuse_external_scores, load_external_scores, video_class_scores


def thumos_sample(video_id: str = "v1", duration: float = 20.0) -> VideoSample:
    # THUMOS geometry: 30 fps, stride 4, 16-frame clips -> seconds = (g * 4 + 8) / 30
    return VideoSample(video_id, torch.zeros(8, 64), None, None, 30.0, duration, 4.0, 16.0)


def raw_dets(segs, scores, labels, video_id: str = "v1") -> Detections:
    return Detections(
        video_id,
        torch.tensor(segs, dtype=torch.float32),
        torch.tensor(scores),
        torch.tensor(labels),
    )


# --------------------------------------------------------------------------- postprocess
def test_units_and_clamping_without_nms():
    raw = raw_dets([[-5, 2], [10, 20], [100, 300]], [0.2, 0.9, 0.5], [1, 2, 3])
    (out,) = postprocess([raw], [thumos_sample()], InferCfg(nms_method="none"))
    assert out.unit == "sec" and out.video_id == "v1"
    # -5 -> -0.4 s clamps to 0; 300 -> 40.27 s clamps to the 20 s duration; order is kept
    want = torch.tensor([[0.0, 16 / 30], [48 / 30, 88 / 30], [408 / 30, 20.0]])
    assert torch.allclose(out.segments, want)
    assert out.scores.tolist() == pytest.approx([0.2, 0.9, 0.5]) and out.labels.tolist() == [
        1,
        2,
        3,
    ]


@pytest.mark.parametrize(
    "method, want",
    [
        ("soft", [0.9, 0.8 * math.exp(-(1 / 9) / 0.5)]),  # Gaussian, IoU 1/3, sigma 0.5
        ("linear", [0.9, 0.8 * (1 - 1 / 3)]),  # linear above iou_threshold 0.1
        ("hard", [0.9]),  # suppressed
    ],
)
def test_nms_method_dispatch(method, want):
    raw = raw_dets([[0, 10], [5, 15]], [0.9, 0.8], [0, 0])
    cfg = InferCfg(nms_method=method, iou_threshold=0.1, nms_sigma=0.5, min_score=0.001)
    out = postprocess_video(raw, thumos_sample(), cfg)
    assert out.scores.tolist() == pytest.approx(want, rel=1e-5)
    assert torch.all((out.segments >= 0) & (out.segments <= 20.0))


def test_postprocess_sorts_and_caps():
    g = torch.Generator().manual_seed(0)
    starts = torch.rand(300, generator=g) * 200
    segs = torch.stack([starts, starts + torch.rand(300, generator=g) * 20 + 1], 1)
    raw = Detections(
        "v1", segs, torch.rand(300, generator=g), torch.randint(0, 20, (300,), generator=g)
    )
    out = postprocess_video(raw, thumos_sample(duration=30.0), InferCfg(max_seg_num=50))
    assert len(out) == 50 and torch.all(out.scores[:-1] >= out.scores[1:])
    assert out.segments.min() >= 0 and out.segments.max() <= 30.0


def test_empty_video():
    out = postprocess_video(Detections.empty("v1"), thumos_sample(), InferCfg())
    assert len(out) == 0 and out.unit == "sec" and out.segments.shape == (0, 2)


def test_contract_errors():
    raw = raw_dets([[0, 1]], [0.5], [0])
    with pytest.raises(ValueError, match="nms_method"):
        postprocess([raw], [thumos_sample()], InferCfg(nms_method="greedy"))
    with pytest.raises(ValueError, match="paired"):
        postprocess([raw], [thumos_sample("v2")], InferCfg())
    with pytest.raises(ValueError, match="grid"):
        sec_raw = Detections("v1", raw.segments, raw.scores, raw.labels, "sec")
        postprocess([sec_raw], [thumos_sample()], InferCfg())
    with pytest.raises(ValueError, match="samples"):
        postprocess([raw], [], InferCfg())
    with pytest.raises(ValueError, match="expects CPU tensors.*predict_batch"):  # one hand-off
        off_cpu = Detections("v1", *(x.to("meta") for x in (raw.segments, raw.scores, raw.labels)))
        postprocess([off_cpu], [thumos_sample()], InferCfg())


# --------------------------------------------------------------------------- score fusion
def sec_dets(video_id: str = "v1") -> Detections:
    return Detections(
        video_id, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), torch.tensor([0.5, 0.9, 0.1]),
        torch.tensor([0, 0, 0]), "sec",
    )  # fmt: skip


def test_fusion_hand_made():
    (out,) = fuse_external_scores([sec_dets()], {"v1": [0.1, 0.6, 0.3]})
    # proposals by score: 0.9 [3, 4], 0.5 [1, 2], 0.1 [5, 6]; top-2 classes 1 (0.6), 2 (0.3);
    # class-major duplication with score sqrt(class * proposal)
    assert out.labels.tolist() == [1, 1, 1, 2, 2, 2]
    want = [math.sqrt(c * p) for c in (0.6, 0.3) for p in (0.9, 0.5, 0.1)]
    assert out.scores.tolist() == pytest.approx(want, rel=1e-6)
    assert out.segments.tolist() == [[3, 4], [1, 2], [5, 6]] * 2
    assert out.unit == "sec"


def test_fusion_caps_proposals_before_duplication():
    (out,) = fuse_external_scores([sec_dets()], {"v1": [0.1, 0.6, 0.3]}, topk=2, max_per_video=2)
    assert len(out) == 4 and out.segments.tolist() == [[3, 4], [1, 2]] * 2


def test_class_scores_softmax_and_nesting():
    probs = video_class_scores([[2.0, -1.0, 0.5]])  # nested and outside [0, 1]: softmax
    e = [math.exp(2.0), math.exp(-1.0), math.exp(0.5)]
    assert probs.tolist() == pytest.approx([v / sum(e) for v in e])
    assert video_class_scores([0.2, 0.8]).tolist() == [0.2, 0.8]  # already probabilities
    (out,) = fuse_external_scores([sec_dets()], {"v1": [[2.0, -1.0, 0.5]]})
    assert out.labels.tolist() == [0, 0, 0, 2, 2, 2]


def test_fusion_missing_video_and_empty_video():
    with pytest.raises(KeyError, match="v2.*scores.json"):
        fuse_external_scores([sec_dets("v2")], {"v1": [0.5]}, source="scores.json")
    (out,) = fuse_external_scores([Detections.empty("v3", "sec")], {})  # never looked up
    assert len(out) == 0


def test_load_external_scores(tmp_path):
    nested = tmp_path / "cls.json"
    nested.write_text(json.dumps({"version": "x", "results": {"v1": [0.1, 0.6, 0.3]}}))
    assert load_external_scores(str(nested)) == {"v1": [0.1, 0.6, 0.3]}
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"v1": [0.2, 0.8]}))
    assert load_external_scores(str(flat)) == {"v1": [0.2, 0.8]}
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_external_scores(str(tmp_path / "missing.json"))


def test_postprocess_applies_fusion(tmp_path):
    path = tmp_path / "cls.json"
    path.write_text(json.dumps({"results": {"v1": [0.1, 0.6, 0.3]}}))
    raw = raw_dets([[0, 10], [40, 50]], [0.9, 0.4], [0, 0])
    cfg = InferCfg(
        nms_method="hard", multiclass_nms=False, voting_thresh=0.0, ext_score_file=str(path)
    )
    (out,) = postprocess([raw], [thumos_sample()], cfg)
    assert out.labels.tolist() == [1, 1, 2, 2]
    assert out.scores.tolist() == pytest.approx(
        [math.sqrt(0.54), math.sqrt(0.24), math.sqrt(0.27), math.sqrt(0.12)]
    )
