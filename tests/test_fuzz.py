"""Property-based tests (hypothesis, modest example counts) of the input parsers and the kernels.

- annotation parser (datasets): random, mostly-valid JSON → a dataset whose every sample loads,
  or a ValueError / FileNotFoundError naming the JSON file or the feature folder; nothing else;
- evaluation parsers: random ground truth / results JSON → arrays or a ValueError;
- seconds ↔ feature grid: inverse of each other, increasing, feature i at the clip centre;
- NMS: kept indices valid, unique, scores non-increasing, the PyTorch twin equal to libs._C.
The evaluator's properties are in tests/test_fuzz_evaluator.py (FUZZ_EXAMPLES applies there too).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from libs.core.segments import grid_to_seconds, seconds_to_grid
from libs.datasets import DATASETS
from libs.evaluation import DetectionMAP
from libs.evaluation.ground_truth import load_ground_truth
from libs.ops import _ext
from libs.ops.nms import nms_1d, soft_nms_1d

# modest by default (the suite runs in seconds); FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py digs deeper
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 50)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
HAS_EXT = _ext._C is not None and hasattr(_ext._C, "nms_1d") and hasattr(_ext._C, "soft_nms_1d")
LABELS = ("Jump", "Run", "Swim")
VIDEO_IDS = ("v0", "v1", "v2", "v3", "v4")

# ============================================================================ JSON-like values
EXTREMES = (10**400, -(10**400), 1e308, -1e308, 1e-300, float("inf"), float("nan"), 2**63)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EXTREMES),  # ints beyond the float64 range, overflowing products, NaN
    st.text(max_size=4),
)
NUMBER_PAIRS = st.lists(st.floats(-10, 10) | st.sampled_from(EXTREMES), min_size=2, max_size=2)
JUNK = NUMBER_PAIRS | st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def perturbed(draw, valid: dict, noise: int = 1) -> object:
    """`valid` with keys dropped or replaced by junk, or junk altogether; `noise` sets how often
    (0: never; each key is hit with probability 2 * noise / (20 + 2 * noise))."""
    if noise and draw(st.sampled_from([False] * 20 + [True] * noise)):
        return draw(JUNK)
    out = dict(valid)
    for key in list(out):
        action = draw(st.sampled_from(["keep"] * 20 + ["drop", "junk"] * noise))
        if action == "drop":
            del out[key]
        elif action == "junk":
            out[key] = draw(JUNK)
    return out


@st.composite
def annotation(draw, noise: int = 1) -> object:
    k = draw(st.integers(0, len(LABELS) - 1))
    start = draw(st.floats(-5, 60))
    segment = [start, start + draw(st.floats(-1, 30))]  # sometimes end <= start, or < 0
    return draw(perturbed({"label": LABELS[k], "label_id": k, "segment": segment}, noise))


@st.composite
def video(draw, noise: int = 1) -> object:
    value = {
        "subset": draw(st.sampled_from(["training", "Training", "training", "validation", "test"])),
        "duration": draw(st.floats(0.5, 100)),
        "fps": draw(st.floats(1, 60)),
        "annotations": draw(st.lists(annotation(noise), max_size=4)),
    }
    return draw(perturbed(value, noise))


@st.composite
def annotation_json(draw) -> object:
    """An ActivityNet-style annotation dict: clean (noise 0) or with junk in places."""
    noise = draw(st.sampled_from([0, 0, 1, 3]))
    database = draw(st.dictionaries(st.sampled_from(VIDEO_IDS), video(noise), min_size=1, max_size=4))
    return draw(perturbed({"version": "fuzz", "database": database}, noise))


# ============================================================================ annotation parser
def _kind(message: str) -> str:
    """An error message without paths, ids and values, for hypothesis' event statistics."""
    words = [w for w in message.split() if "/" not in w and "'" not in w and not w[:1].isdigit()]
    return " ".join(words)[:50]


def _parse_annotations(data, name: str, num_classes: int, default_fps, is_training: bool) -> str:
    """Build a dataset from `data` and load every sample; returns "ok" or the clear error's text.

    Anything but a ValueError / FileNotFoundError naming the JSON file or the feature folder
    fails the test (it escapes, or the assertion fires).
    """
    with tempfile.TemporaryDirectory() as tmp:
        json_file, folder = Path(tmp) / "anno.json", Path(tmp) / "feats"
        folder.mkdir()
        json_file.write_text(json.dumps(data))  # NaN / Infinity are written as JSON extensions
        for vid in VIDEO_IDS[:4]:  # v4 never has features: a missing file must be named
            np.save(folder / f"{vid}.npy", np.random.default_rng(0).random((40, 4), dtype=np.float32))
        try:
            dataset = DATASETS[name](
                json_file=str(json_file), feat_folder=str(folder), split=("training",),
                is_training=is_training, feat_stride=4, num_frames=8, input_dim=4,
                num_classes=num_classes, default_fps=default_fps, max_seq_len=32, file_ext=".npy",
            )  # fmt: skip
        except (ValueError, FileNotFoundError) as exc:
            message = str(exc)
            assert str(json_file) in message or str(folder) in message, message
            return message
        assert len(dataset) > 0
        for i in range(len(dataset)):
            sample = dataset[i]
            assert torch.isfinite(sample.feats).all() and sample.feats.shape[0] == 4
            if sample.segments is not None:
                assert sample.segments.shape == (len(sample.labels), 2)
                assert torch.isfinite(sample.segments).all()
                assert ((sample.labels >= 0) & (sample.labels < num_classes)).all()
        return "ok"


@FUZZ
@given(
    data=annotation_json(),
    name=st.sampled_from(sorted(DATASETS)),
    num_classes=st.sampled_from([1, 1, 3]),
    default_fps=st.sampled_from([None, 30.0]),
    is_training=st.booleans(),
)
def test_annotation_parser_gives_a_dataset_or_a_clear_error(data, name, num_classes, default_fps, is_training):
    outcome = _parse_annotations(data, name, num_classes, default_fps, is_training)
    event("dataset built" if outcome == "ok" else "error: " + _kind(outcome))


def test_annotation_parser_helper_sees_both_outcomes():
    """The property above is only meaningful if the helper tells success from a clear error."""
    video = {"subset": "training", "duration": 10.0, "fps": 30.0,
             "annotations": [{"label": "Jump", "label_id": 0, "segment": [1.0, 4.0]}]}  # fmt: skip
    assert _parse_annotations({"database": {"v0": video}}, "thumos14", 1, None, True) == "ok"
    video["annotations"][0]["segment"] = [4.0, "x"]
    message = _parse_annotations({"database": {"v0": video}}, "thumos14", 1, None, True)
    assert "video 'v0' annotation 0" in message and "'segment'" in message


# ============================================================================ evaluation parsers
GT_FIXED = {
    "database": {
        "a": {"subset": "validation", "annotations": [
            {"label": "Jump", "label_id": 0, "segment": [0.0, 10.0]},
            {"label": "Run", "label_id": 1, "segment": [20.0, 30.0]},
        ]},
        "b": {"subset": "validation", "annotations": []},
        "t": {"subset": "training", "annotations": [{"label": "Swim", "label_id": 2, "segment": [1.0, 2.0]}]},
    }
}  # fmt: skip


def _write_json(path: Path, data) -> str:
    path.write_text(json.dumps(data))  # NaN / Infinity are written as JSON extensions
    return str(path)


@st.composite
def result_entry(draw, noise: int) -> object:
    label = draw(st.sampled_from(LABELS + (0, 1, 2) + ((-1, 3) if noise else ())))  # names or label ids
    start = draw(st.floats(-5, 40))
    entry = {"label": label, "segment": [start, start + draw(st.floats(-1, 20))], "score": draw(st.floats(0, 1))}
    return draw(perturbed(entry, noise))


@st.composite
def results_json(draw) -> object:
    """A results dict on split videos 'a', 'b', training video 't' and unknown 'zz'."""
    noise = draw(st.sampled_from([0, 0, 1, 3]))
    per_video = st.lists(result_entry(noise), min_size=1, max_size=4)
    if noise:
        per_video = per_video | JUNK
    results = draw(st.dictionaries(st.sampled_from(["a", "b", "t", "zz"]), per_video, max_size=4))
    return draw(perturbed({"version": "VERSION 1.3", "results": results}, noise))


@FUZZ
@given(results=results_json())
def test_results_parser_gives_arrays_or_a_value_error(results):
    evaluator = DetectionMAP(GT_FIXED, "validation", [0.3, 0.5])
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_json(Path(tmp) / "results.json", results)
        try:
            preds = evaluator.parse(path)
        except ValueError as exc:
            event("error: " + _kind(str(exc)))
            assert path in str(exc), str(exc)
            return
    n = len(preds.scores)
    event(f"results parsed ({min(n, 3)}+ rows)")
    assert preds.segments.shape == (n, 2) and preds.labels.shape == preds.video.shape == (n,)
    assert np.isfinite(preds.segments).all() and np.isfinite(preds.scores).all()
    assert ((preds.labels >= 0) & (preds.labels < evaluator.gt.num_classes)).all()
    try:
        result = evaluator.evaluate(results)
    except ValueError as exc:  # only: every prediction is on a video outside the split
        assert "none of its" in str(exc), str(exc)
        return
    assert all(0.0 <= m <= 1.0 for m in result.mAP)


@FUZZ
@given(data=annotation_json(), split=st.sampled_from(["training", "validation", ["Training", "test"]]))
def test_ground_truth_parser_gives_arrays_or_a_value_error(data, split):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_json(Path(tmp) / "gt.json", data)
        try:
            gt = load_ground_truth(path, split)
        except ValueError as exc:
            event("error: " + _kind(str(exc)))
            assert path in str(exc), str(exc)
            return
    g = len(gt.segments)
    event(f"ground truth parsed ({min(g, 3)}+ rows)")
    assert g > 0 and gt.segments.shape == (g, 2) and np.isfinite(gt.segments).all()
    assert gt.video_idx.shape == gt.class_idx.shape == (g,)
    assert ((gt.class_idx >= 0) & (gt.class_idx < gt.num_classes)).all()
    assert ((gt.video_idx >= 0) & (gt.video_idx < len(gt.video_ids))).all()


# ============================================================================ seconds <-> grid
@FUZZ
@given(
    seconds=st.lists(st.floats(-10, 1e4), min_size=1, max_size=8),
    fps=st.floats(1, 120),
    feat_stride=st.sampled_from([1, 2, 4, 8, 16, 5.3]),
    num_frames=st.sampled_from([1, 8, 16, 32, 7.5]),
)
def test_seconds_grid_round_trip(seconds, fps, feat_stride, num_frames):
    x = torch.tensor(seconds, dtype=torch.float64)
    grid = seconds_to_grid(x, fps, feat_stride, num_frames)
    back = grid_to_seconds(grid, fps, feat_stride, num_frames)
    torch.testing.assert_close(back, x, rtol=1e-12, atol=1e-9)
    order = torch.argsort(x)  # strictly increasing map (fps, stride > 0)
    assert (grid[order].diff() >= 0).all()
    # feature i is the clip starting at frame i * stride: its centre maps to grid i exactly
    i = torch.arange(5, dtype=torch.float64)
    centre = (i * feat_stride + num_frames / 2) / fps
    torch.testing.assert_close(seconds_to_grid(centre, fps, feat_stride, num_frames), i, rtol=0, atol=1e-9)


# ============================================================================ NMS
@st.composite
def candidates(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 2] segments on a coarse grid (exact IoU ties, duplicates, zero length), [N] scores."""
    n = draw(st.integers(0, 40))
    starts = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    scores = draw(st.lists(st.sampled_from([0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]) | st.floats(0, 1),
                           min_size=n, max_size=n))
    segs = torch.tensor([[s, s + w] for s, w in zip(starts, lengths)], dtype=torch.float32).reshape(n, 2)
    return segs, torch.tensor(scores, dtype=torch.float32).reshape(n)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0] + 1e-6) + (b[1] - b[0] + 1e-6) - inter
    return float(inter / union)


@FUZZ
@given(case=candidates(), thr=st.sampled_from([0.1, 0.3, 0.5, 0.7, 1.0]))
def test_hard_nms_properties(case, thr):
    segs, scores = case
    keep = nms_1d(segs, scores, thr, backend="torch")
    n = len(scores)
    assert keep.dtype == torch.long and len(set(keep.tolist())) == len(keep)  # unique
    assert ((keep >= 0) & (keep < n)).all()  # valid
    assert (scores[keep].diff() <= 0).all()  # by non-increasing score
    kept = set(keep.tolist())
    for a in range(len(keep)):  # greedy: no two kept ones overlap by >= thr
        for b in range(a + 1, len(keep)):
            assert _iou(segs[keep[a]], segs[keep[b]]) < thr + 1e-5
    for j in set(range(n)) - kept:  # each dropped one overlaps a kept one scoring at least as high
        assert any(_iou(segs[j], segs[k]) >= thr - 1e-5 and scores[k] >= scores[j] for k in kept)
    if HAS_EXT:
        assert torch.equal(nms_1d(segs, scores, thr, backend="ext"), keep)


@FUZZ
@given(
    case=candidates(),
    thr=st.sampled_from([0.1, 0.5, 0.9]),
    method=st.sampled_from([0, 1, 2]),
    min_score=st.sampled_from([0.0, 0.001, 0.2]),
)
def test_soft_nms_properties(case, thr, method, min_score):
    segs, scores = case
    inds, dets = soft_nms_1d(segs, scores, thr, 0.5, min_score, method, backend="torch")
    assert len(set(inds.tolist())) == len(inds) and ((inds >= 0) & (inds < len(scores))).all()
    assert torch.equal(dets[:, :2], segs[inds])  # segments are never changed
    assert (dets[:, 2] <= scores[inds] + 1e-6).all()  # scores only decay
    if len(inds) > 1:  # every one after the first survived the min_score pruning
        assert (dets[1:, 2] >= min_score - 1e-7).all()
    if HAS_EXT:
        inds_ext, dets_ext = soft_nms_1d(segs, scores, thr, 0.5, min_score, method, backend="ext")
        assert torch.equal(inds_ext, inds)
        torch.testing.assert_close(dets_ext, dets, rtol=1e-6, atol=1e-6)


