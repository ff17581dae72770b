"""1-D NMS on the GPU: the CUDA kernels and the PyTorch twin on CUDA tensors against the CPU
kernels, and the choice of the NMS device (`nms_device`, `to_nms_device`, LIBS_NMS_DEVICE).

The CUDA tests are marked `cuda` and skip without a GPU or without libs._C_cuda; the device
choice is also tested on CPU with a fake CUDA build.
"""

import types

import pytest
import torch

from libs.ops import _ext
from libs.ops.nms import batched_nms, nms_1d, nms_device, soft_nms_1d, to_nms_device
from tests.test_ops_nms import HAS_CUDA_EXT, assert_soft_equal, iou, make_case, needs_cuda_ext


# --------------------------------------------------------------------------- CUDA parity
def distinct_case(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """No two equal scores: CPU (std::sort) and CUDA (stable sort) order ties differently."""
    segs, _ = make_case(n, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return segs, (torch.randperm(n, generator=g).float() + 1) / (n + 1)


@pytest.mark.cuda
@needs_cuda_ext
@pytest.mark.parametrize("n", [1, 63, 64, 65, 700, 3000])
def test_cuda_matches_cpu(n):
    segs, scores = distinct_case(n, seed=n)
    for thr in (0.1, 0.5, 0.9):
        cpu = nms_1d(segs, scores, thr, backend="ext")
        assert torch.equal(nms_1d(segs.cuda(), scores.cuda(), thr, backend="cuda").cpu(), cpu)
    for method, min_score in [(0, 0.001), (1, 0.001), (2, 0.001), (2, 0.2)]:
        args = (0.5, 0.5, min_score, method)
        cpu = soft_nms_1d(segs, scores, *args, backend="ext")
        gpu = soft_nms_1d(segs.cuda(), scores.cuda(), *args, backend="cuda")
        assert_soft_equal(tuple(t.cpu() for t in gpu), cpu)


@pytest.mark.cuda
@needs_cuda_ext
def test_cuda_ties_keep_a_valid_greedy_result():
    segs, scores = make_case(500, ties=True, seed=11)
    keep = nms_1d(segs.cuda(), scores.cuda(), 0.5, backend="cuda").cpu().tolist()
    # tied scores may be visited in another order than on the CPU; the result is still greedy
    assert all(scores[a] >= scores[b] for a, b in zip(keep, keep[1:]))
    assert all(iou(segs[a], segs[b]) < 0.5 for i, a in enumerate(keep) for b in keep[i + 1 :])
    # soft-NMS picks the first maximum by position on both devices, and linear decay is exact
    # arithmetic: identical even with ties
    args = (0.5, 0.5, 0.001, 1)
    gpu = soft_nms_1d(segs.cuda(), scores.cuda(), *args, backend="cuda")
    assert_soft_equal(tuple(t.cpu() for t in gpu), soft_nms_1d(segs, scores, *args, backend="ext"))


@pytest.mark.cuda
def test_torch_twin_on_cuda_matches_cpu():
    segs, scores = distinct_case(300, seed=5)
    assert torch.equal(
        nms_1d(segs.cuda(), scores.cuda(), 0.5, backend="torch").cpu(),
        nms_1d(segs, scores, 0.5, backend="torch"),
    )
    gpu = soft_nms_1d(segs.cuda(), scores.cuda(), 0.5, 0.5, 0.001, 2, backend="torch")
    assert_soft_equal(
        tuple(t.cpu() for t in gpu), soft_nms_1d(segs, scores, 0.5, 0.5, 0.001, 2, backend="torch")
    )


def test_nms_device_keeps_cpu_outputs_on_cpu(monkeypatch):
    monkeypatch.setattr(_ext, "_C_cuda", types.SimpleNamespace(nms_1d=None, soft_nms_1d=None))
    assert nms_device(torch.zeros(3, 2)) == torch.device("cpu")


def test_to_nms_device_on_cpu_detaches_and_casts():
    segs = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    scores, labels = torch.rand(4, dtype=torch.float16), torch.tensor([0, 1, 1, 2])
    s, p, l = to_nms_device(segs, scores, labels)
    assert s.dtype == p.dtype == torch.float32 and not s.requires_grad
    assert s.device.type == p.device.type == l.device.type == "cpu" and torch.equal(l, labels)


def test_cuda_backend_without_cuda_extension_names_the_fix(monkeypatch):
    monkeypatch.setattr(_ext, "_C_cuda", None)
    segs, scores = make_case(5)
    with pytest.raises((RuntimeError, ValueError)):
        soft_nms_1d(segs, scores, 0.5, 0.5, 0.001, 2, backend="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("built", [True, False])
def test_nms_device_follows_the_cuda_build(monkeypatch, built):
    if built and not HAS_CUDA_EXT:
        pytest.skip("libs._C_cuda (CUDA NMS) is not built")
    if not built:
        monkeypatch.setattr(_ext, "_C_cuda", None)
    x = torch.zeros(3, 2, device="cuda")
    assert nms_device(x) == (x.device if built else torch.device("cpu"))
    monkeypatch.setenv("LIBS_NMS_DEVICE", "cpu")
    assert nms_device(x) == torch.device("cpu")


@pytest.mark.cuda
@needs_cuda_ext
@pytest.mark.parametrize("method", ["soft", "linear", "hard"])
@pytest.mark.parametrize("multiclass", [True, False])
def test_batched_nms_cuda_matches_cpu(method, multiclass):
    """The whole per-video NMS on GPU tensors (the CUDA kernels) against libs._C on the CPU:
    same kept segments and labels, scores to 1e-6 (distinct scores: no tie-order ambiguity)."""
    segs, scores = distinct_case(2000, seed=3)
    labels = torch.randint(0, 20, (2000,), generator=torch.Generator().manual_seed(3))
    kw = dict(iou_threshold=0.1, min_score=0.001, max_seg_num=200, method=method,
              multiclass=multiclass, sigma=0.5, voting_thresh=0.7)
    cpu = batched_nms(segs, scores, labels, backend="ext", **kw)
    gpu = batched_nms(segs.cuda(), scores.cuda(), labels.cuda(), backend="cuda", **kw)
    assert gpu[0].is_cuda
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=0, atol=1e-6)
    assert torch.equal(gpu[2].cpu(), cpu[2])
