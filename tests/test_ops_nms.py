"""1-D NMS: hand-made cases per method, C++ vs PyTorch twin parity, batched_nms, backends
(the GPU side is tests/test_ops_nms_cuda.py).

Expected values are computed by hand in the comments; the ext/CUDA kernels are checked against
the pure-PyTorch twins (the readable specification) on random inputs with ties.
"""

import math
import re
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.ops import _ext
from libs.ops.nms import batched_nms, nms_1d, seg_voting, soft_nms_1d

HAS_EXT = _ext._C is not None and hasattr(_ext._C, "nms_1d") and hasattr(_ext._C, "soft_nms_1d")
HAS_CUDA_EXT = _ext._C_cuda is not None
needs_ext = pytest.mark.skipif(
    not HAS_EXT, reason=f"libs._C without nms_1d: {_ext.BUILD_CMD}"
)
needs_cuda_ext = pytest.mark.skipif(not HAS_CUDA_EXT, reason="libs._C_cuda (CUDA NMS) is not built")
BACKENDS = ["torch", pytest.param("ext", marks=needs_ext)]


def make_case(n: int, ties: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random THUMOS-like candidates: [n, 2] segments in [0, 100), [n] scores.

    ties=True quantises scores to 6 values, snaps segment ends to integers (exact IoUs) and
    duplicates a few segments, which exercises every tie-breaking rule of the kernels.
    """
    g = torch.Generator().manual_seed(seed)
    centers, half = torch.rand(n, generator=g) * 100, torch.rand(n, generator=g) * 10 + 0.5
    segs = torch.stack([centers - half, centers + half], dim=1)  # [n, 2]
    scores = torch.rand(n, generator=g)  # [n]
    if ties:
        segs, scores = segs.round(), (scores * 5).round() / 5
        if n >= 8:
            segs[n // 2 : n // 2 + 3] = segs[0]
    return segs, scores


# --------------------------------------------------------------------------- hand-made: hard NMS
@pytest.mark.parametrize("backend", BACKENDS)
def test_nms_hand_made(backend):
    segs = torch.tensor([[0, 10], [1, 11], [20, 30], [0, 9], [25, 40]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6])
    # rank order 3, 0, 1, 2, 4. Seg 3 removes 0 (IoU 9/10) and 1 (8/11); 2 vs 4: IoU 5/20 = 0.25
    assert nms_1d(segs, scores, 0.5, backend=backend).tolist() == [3, 2, 4]
    # at threshold 0.25 the +1e-6 areas put IoU(2, 4) just below 0.25, so 4 survives
    assert nms_1d(segs, scores, 0.25, backend=backend).tolist() == [3, 2, 4]
    assert nms_1d(segs, scores, 0.2, backend=backend).tolist() == [3, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nms_identical_segments(backend):
    segs = torch.tensor([[2.0, 5.0], [2.0, 5.0]])
    scores = torch.tensor([0.3, 0.7])
    # IoU of identical segments is 3 / (3 + 1e-6) < 1: only the +1e-6 areas enter the union
    assert nms_1d(segs, scores, 1.0, backend=backend).tolist() == [1, 0]
    assert nms_1d(segs, scores, 0.9999, backend=backend).tolist() == [1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nms_threshold_is_inclusive(backend):
    segs = torch.tensor([[0.0, 4.0], [0.0, 2.0]])  # IoU = 2 / (4 + 2 - 2 + 2e-6), just below 0.5
    scores = torch.tensor([0.9, 0.8])
    iou_f32 = torch.tensor(2.0) / (torch.tensor(4.0) + 1e-6 + (torch.tensor(2.0) + 1e-6) - 2)
    assert nms_1d(segs, scores, float(iou_f32), backend=backend).tolist() == [0]  # IoU >= thr
    assert nms_1d(segs, scores, float(iou_f32) + 1e-7, backend=backend).tolist() == [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_inputs(backend):
    segs, scores = torch.zeros(0, 2), torch.zeros(0)
    keep = nms_1d(segs, scores, 0.5, backend=backend)
    assert keep.dtype == torch.long and keep.shape == (0,)
    inds, dets = soft_nms_1d(segs, scores, 0.5, 0.5, 0.001, 2, backend=backend)
    assert inds.dtype == torch.long and inds.shape == (0,) and dets.shape == (0, 3)


# --------------------------------------------------------------------------- hand-made: soft-NMS
SOFT_SEGS = torch.tensor([[0, 10], [0, 10], [5, 15], [30, 40]], dtype=torch.float32)
SOFT_SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])
# IoUs with segment 0: seg 1 -> 1, seg 2 -> 5/15 = 1/3, seg 3 -> 0; IoU(2, 1) = 1/3
SOFT_EXPECTED = {
    # Gaussian (sigma 0.5): 1 -> 0.8 e^-2; 2 -> 0.7 e^-(2/9); 3 (0.6) picked next; 1 decays again
    2: ([0, 3, 2, 1], [0.9, 0.6, 0.7 * math.exp(-2 / 9), 0.8 * math.exp(-2) * math.exp(-2 / 9)]),
    # linear (thr 0.3): 1 -> 0 is dropped (slot refilled with 3); 2 -> 0.7 * (1 - 1/3)
    1: ([0, 3, 2], [0.9, 0.6, 0.7 * (2 / 3)]),
    # hard: 1 and 2 are both removed
    0: ([0, 3], [0.9, 0.6]),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", [0, 1, 2])
def test_soft_nms_hand_made(backend, method):
    inds, dets = soft_nms_1d(SOFT_SEGS, SOFT_SCORES, 0.3, 0.5, 0.001, method, backend=backend)
    want_inds, want_scores = SOFT_EXPECTED[method]
    assert inds.tolist() == want_inds
    assert torch.equal(dets[:, :2], SOFT_SEGS[want_inds])
    assert torch.allclose(dets[:, 2], torch.tensor(want_scores), rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_nms_swap_with_last_decides_ties(backend):
    segs = torch.tensor([[0, 10], [0, 10], [20, 30], [40, 50]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.5, 0.4, 0.4])
    # seg 1 is removed and its slot refilled with the LAST one (3), so among the tied 0.4s the
    # first maximum is now 3, not 2: selection order 0, 3, 2 (a stable sort would say 0, 2, 3)
    inds, _ = soft_nms_1d(segs, scores, 0.5, 0.5, 0.001, 0, backend=backend)
    assert inds.tolist() == [0, 3, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_nms_first_pick_ignores_min_score(backend):
    segs = torch.tensor([[0, 1], [2, 3], [4, 5]], dtype=torch.float32)
    # the first maximum is always emitted; the others fall below min_score and are dropped
    inds, dets = soft_nms_1d(
        segs, torch.tensor([0.1, 0.2, 0.05]), 0.5, 0.5, 0.5, 2, backend=backend
    )
    assert inds.tolist() == [1] and dets.tolist() == [[2.0, 3.0, pytest.approx(0.2)]]


def test_soft_nms_does_not_modify_inputs():
    segs, scores = make_case(50, ties=True)
    segs0, scores0 = segs.clone(), scores.clone()
    for backend in ["torch"] + (["ext"] if HAS_EXT else []):
        soft_nms_1d(segs, scores, 0.5, 0.5, 0.01, 1, backend=backend)
        assert torch.equal(segs, segs0) and torch.equal(scores, scores0)


# --------------------------------------------------------------------------- ext vs torch twin
def assert_soft_equal(a: tuple, b: tuple) -> None:
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1][:, :2], b[1][:, :2])
    assert torch.allclose(
        a[1][:, 2], b[1][:, 2], rtol=1e-6, atol=1e-12
    )  # exp() may differ by 1 ulp


@needs_ext
@pytest.mark.parametrize("n", [1, 2, 17, 300, 1500])
@pytest.mark.parametrize("ties", [False, True])
def test_ext_matches_torch(n, ties):
    segs, scores = make_case(n, ties=ties, seed=n)
    for thr in (0.1, 0.5, 0.7):
        assert torch.equal(
            nms_1d(segs, scores, thr, backend="ext"), nms_1d(segs, scores, thr, backend="torch")
        )
    for method, min_score in [(0, 0.001), (1, 0.001), (2, 0.001), (2, 0.3), (1, 0.2)]:
        args = (segs, scores, 0.5, 0.5, min_score, method)
        assert_soft_equal(soft_nms_1d(*args, backend="ext"), soft_nms_1d(*args, backend="torch"))


@needs_ext
@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 20), st.integers(1, 6), st.integers(0, 4)), min_size=1, max_size=40
    ),
    thr=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    method=st.sampled_from([0, 1, 2]),
)
def test_ext_matches_torch_property(data, thr, method):
    # integer segments and 5 score levels: many exact IoU and score ties
    segs = torch.tensor([[s, s + w] for s, w, _ in data], dtype=torch.float32)
    scores = torch.tensor([q / 4 for _, _, q in data], dtype=torch.float32)
    assert torch.equal(
        nms_1d(segs, scores, thr, backend="ext"), nms_1d(segs, scores, thr, backend="torch")
    )
    args = (segs, scores, thr, 0.5, 0.1, method)
    assert_soft_equal(soft_nms_1d(*args, backend="ext"), soft_nms_1d(*args, backend="torch"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_nms_properties(backend):
    segs, scores = make_case(400, seed=3)
    keep = nms_1d(segs, scores, 0.4, backend=backend)
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])  # descending score
    kept = set(keep.tolist())
    for j in range(400):  # every removed segment overlaps a higher-scored kept one by >= 0.4
        if j not in kept:
            assert any(iou(segs[k], segs[j]) >= 0.4 - 1e-5 and scores[k] >= scores[j] for k in kept)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = max(0.0, float(min(a[1], b[1]) - max(a[0], b[0])))
    return inter / (float(a[1] - a[0]) + float(b[1] - b[0]) - inter)


# --------------------------------------------------------------------------- batched_nms
def test_batched_nms_multiclass_hand_made():
    segs = torch.tensor([[0, 10], [1, 10], [0, 10], [50, 60], [70, 80]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.005])
    labels = torch.tensor([0, 0, 1, 1, 1])
    out_segs, out_scores, out_labels = batched_nms(
        segs, scores, labels, 0.5, 0.01, 100, method="hard", multiclass=True
    )
    # class 0: seg 1 suppressed by seg 0 (IoU 0.9); class 1: no overlap, seg 4 under min_score;
    # the overlap of seg 2 (class 1) with seg 0 (class 0) does not count across classes
    assert out_scores.tolist() == pytest.approx([0.95, 0.9, 0.7])
    assert out_labels.tolist() == [1, 0, 1]
    assert out_segs.tolist() == [[50, 60], [0, 10], [0, 10]]
    # max_seg_num caps each class, then the total
    _, capped_scores, _ = batched_nms(segs, scores, labels, 0.5, 0.01, 1, method="hard")
    assert capped_scores.tolist() == pytest.approx([0.95])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_nms_multiclass_soft(backend):
    segs = torch.tensor([[0, 10], [0, 10], [0, 10]], dtype=torch.float32)
    scores, labels = torch.tensor([0.9, 0.8, 0.6]), torch.tensor([2, 2, 5])
    _, out_scores, out_labels = batched_nms(
        segs, scores, labels, 0.5, 0.001, 100, sigma=0.5, backend=backend
    )
    # class 2: the duplicate decays to 0.8 e^-2 = 0.108; class 5 keeps 0.6
    assert out_scores.tolist() == pytest.approx([0.9, 0.6, 0.8 * math.exp(-2)], rel=1e-6)
    assert out_labels.tolist() == [2, 5, 2]


def test_batched_nms_agnostic_voting_hand_made():
    segs = torch.tensor([[0, 10], [2, 12], [40, 50]], dtype=torch.float32)
    scores, labels = torch.tensor([0.8, 0.2, 0.5]), torch.tensor([3, 4, 5])
    kwargs = dict(method="hard", multiclass=False, voting_thresh=0.6)
    out_segs, out_scores, out_labels = batched_nms(segs, scores, labels, 0.5, 0.01, 100, **kwargs)
    # hard NMS keeps 0 and 2 (IoU(0, 1) = 8/12); voting: seg 0 averages itself and seg 1
    # (IoU 0.67 >= 0.6) with weights 0.8 and 0.2 -> [0.4, 10.4]; seg 2 has no neighbour
    assert torch.allclose(out_segs, torch.tensor([[0.4, 10.4], [40.0, 50.0]]))
    assert out_scores.tolist() == pytest.approx([0.8, 0.5]) and out_labels.tolist() == [3, 5]
    # ActionFormer's variant also weights by IoU:
    # (0.8 * [0, 10] + 0.2 * 2/3 * [2, 12]) / (0.8 + 0.2 * 2/3)
    af_segs, _, _ = batched_nms(
        segs, scores, labels, 0.5, 0.01, 100, voting_iou_weighted=True, **kwargs
    )
    w = 0.2 * 2 / 3
    assert torch.allclose(af_segs[0], torch.tensor([2 * w, 8 + 12 * w]) / (0.8 + w))


def test_voting_uses_original_scores_after_soft_nms():
    segs = torch.tensor([[0, 10], [1, 11]], dtype=torch.float32)
    scores, labels = torch.tensor([0.9, 0.6]), torch.tensor([0, 0])
    out_segs, out_scores, _ = batched_nms(
        segs, scores, labels, 0.5, 0.001, 100, multiclass=False, sigma=0.5, voting_thresh=0.75
    )
    # IoU 9/11 >= 0.75: both kept segments vote with the UNdecayed scores 0.9 and 0.6
    assert torch.allclose(out_segs, torch.tensor([[0.4, 10.4], [0.4, 10.4]]))
    assert out_scores[1] == pytest.approx(0.6 * math.exp(-((9 / 11) ** 2) / 0.5), rel=1e-5)


def test_seg_voting_single_segment_is_identity():
    seg = torch.tensor([[3.0, 7.0]])
    assert torch.allclose(seg_voting(seg, seg, torch.tensor([0.5]), 0.75), seg)


def test_batched_nms_empty():
    segs, scores, labels = batched_nms(
        torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int32), 0.5, 0.01, 10
    )
    assert segs.shape == (0, 2) and scores.shape == (0,) and labels.dtype == torch.int32


@needs_ext
@pytest.mark.parametrize("method", ["soft", "linear", "hard"])
@pytest.mark.parametrize("multiclass", [True, False])
def test_batched_nms_ext_matches_torch(method, multiclass):
    segs, scores = make_case(600, ties=True, seed=7)
    labels = torch.randint(0, 5, (600,))
    args = (segs, scores, labels, 0.3, 0.001, 200)
    kwargs = dict(method=method, multiclass=multiclass, sigma=0.5, voting_thresh=0.7)
    ext = batched_nms(*args, backend="ext", **kwargs)
    ref = batched_nms(*args, backend="torch", **kwargs)
    assert torch.equal(ext[2], ref[2]) and torch.allclose(ext[1], ref[1], rtol=1e-6)
    assert torch.allclose(ext[0], ref[0], rtol=1e-6, atol=1e-5)
    assert torch.all(ext[1][:-1] >= ext[1][1:])


# --------------------------------------------------------------------------- backend selection
@pytest.fixture
def no_ext(monkeypatch):
    monkeypatch.setattr(_ext, "_C", None)


def test_auto_falls_back_to_torch(no_ext):
    segs, scores = make_case(20)
    assert nms_1d(segs, scores, 0.5).shape[0] > 0


def test_explicit_missing_ext_raises_with_build_command(no_ext):
    segs, scores = make_case(5)
    with pytest.raises(RuntimeError, match=re.escape(_ext.BUILD_CMD)):
        nms_1d(segs, scores, 0.5, backend="ext")
    with pytest.raises(RuntimeError, match="pip install"):
        soft_nms_1d(segs, scores, 0.5, 0.5, 0.001, 2, backend="cuda")


def test_stale_ext_without_nms(monkeypatch):
    monkeypatch.setattr(_ext, "_C", types.SimpleNamespace())
    segs, scores = make_case(5)
    assert nms_1d(segs, scores, 0.5).dtype == torch.long  # auto: torch twin
    with pytest.raises(RuntimeError, match="rebuild"):
        nms_1d(segs, scores, 0.5, backend="ext")


def test_bad_arguments():
    segs, scores = make_case(5)
    with pytest.raises(ValueError, match="backend"):
        nms_1d(segs, scores, 0.5, backend="fast")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        nms_1d(segs[:, :1], scores, 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms_1d(segs, scores[:3], 0.5)
    with pytest.raises(ValueError, match="method"):
        soft_nms_1d(segs, scores, 0.5, 0.5, 0.001, 3)


@needs_ext
def test_cuda_backend_rejects_cpu_tensors():
    segs, scores = make_case(5)
    with pytest.raises((RuntimeError, ValueError)):
        nms_1d(segs, scores, 0.5, backend="cuda")


def test_batched_nms_method_names_map_to_the_kernel_methods():
    """batched_nms takes test.nms_method's names; "linear" is soft_nms_1d's method 1, "soft" its 2."""
    segs = torch.tensor([[0, 10], [1, 10]], dtype=torch.float32)
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([0, 0])
    _, linear, _ = batched_nms(segs, scores, labels, 0.5, 0.001, 100, method="linear")
    assert linear.tolist() == pytest.approx([0.9, 0.8 * (1 - 0.9)], rel=1e-5)  # IoU 9/10 >= 0.5
    _, gauss, _ = batched_nms(segs, scores, labels, 0.5, 0.001, 100, method="soft", sigma=0.5)
    assert gauss.tolist() == pytest.approx([0.9, 0.8 * math.exp(-(0.9**2) / 0.5)], rel=1e-5)
    with pytest.raises(ValueError, match="method must be one of"):
        batched_nms(segs, scores, labels, 0.5, 0.001, 100, method=2)

