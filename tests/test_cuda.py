"""GPU tests (`pytest -m cuda`; skipped with a reason where no GPU is visible).

The scan at THUMOS lengths (the CUDA kernel works in chunks of 2048: L = 2304 and 4608 cross
one and two chunk borders) forward and backward against the float64 reference in fp32 and bf16,
for every GPU backend installed; every mixer and block, and the THUMOS-shaped model's training
step, on CUDA against the CPU with the same weights; the loader's batches in pinned memory.
(NMS CUDA vs CPU: tests/test_ops_nms.py; probes and fallbacks: tests/test_gpu_probes.py.)
"""
import copy
import functools

import pytest
import torch

from libs.core.config import load_config
from libs.core.structures import VideoSample
from libs.datasets.collate import collate
from libs.modeling import build_model
from libs.modeling.blocks import BLOCKS
from libs.modeling.mixers import BiMambaV2, DecomposedBiMamba
from libs.ops.scan import installed_gpu_backends, selective_scan, selective_scan_ref

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def exact_fp32():
    """No TF32: fp32 GPU results must be comparable with the CPU at 1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def gpu_backends():
    """"auto" plus each GPU scan backend whose probe passes on this machine."""
    return ["auto", *installed_gpu_backends()]


def scaled_close(actual, expected, rtol, name):
    expected = expected.to(torch.float64).cpu()
    atol = rtol * max(expected.abs().max().item(), 1e-6)
    torch.testing.assert_close(actual.double().cpu(), expected, rtol=rtol, atol=atol,
                               msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend", gpu_backends())
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("length", [2304, 4608])
def test_scan_long_sequences(backend, dtype, tol, length):
    g = torch.Generator().manual_seed(length)
    B, D, N = 2, 32, 16
    x = dict(u=torch.randn(B, D, length, generator=g), delta=torch.randn(B, D, length, generator=g) * 0.5,
             B=torch.randn(B, N, length, generator=g), C=torch.randn(B, N, length, generator=g),
             z=torch.randn(B, D, length, generator=g))
    x = {k: v.to(dtype) for k, v in x.items()}  # the kernel sees these values; so does the reference
    x.update(A=-(torch.rand(D, N, generator=g) + 0.1), D=torch.randn(D, generator=g),
             delta_bias=torch.randn(D, generator=g) * 0.3 - 0.5)
    leaves = {k: v.cuda().requires_grad_() for k, v in x.items()}
    refs = {k: v.double().requires_grad_() for k, v in x.items()}
    out = selective_scan(**leaves, delta_softplus=True, backend=backend)
    ref = selective_scan_ref(**refs, delta_softplus=True)
    weight = torch.linspace(-1, 1, ref.numel(), dtype=torch.float64).view_as(ref)
    (out * weight.cuda().to(out.dtype)).sum().backward()
    (ref * weight).sum().backward()
    scaled_close(out, ref, tol, "out")
    for k in x:
        scaled_close(leaves[k].grad, refs[k].grad, 2 * tol, f"d{k}")


def compare_module(module: torch.nn.Module, inputs: tuple, tol: float = 1e-3):
    """Forward + backward of `module` on CPU and on CUDA with the same weights."""
    gpu = copy.deepcopy(module).cuda()
    out_cpu = module(*inputs)
    out_gpu = gpu(*[t.cuda() if torch.is_tensor(t) else t for t in inputs])
    out_cpu, out_gpu = (o[0] if isinstance(o, tuple) else o for o in (out_cpu, out_gpu))
    weight = torch.linspace(-1, 1, out_cpu.numel()).view_as(out_cpu)
    (out_cpu * weight).sum().backward()
    (out_gpu * weight.cuda()).sum().backward()
    scaled_close(out_gpu, out_cpu, tol, "out")
    for (name, p_cpu), p_gpu in zip(module.named_parameters(), gpu.parameters()):
        if p_cpu.grad is not None:
            scaled_close(p_gpu.grad, p_cpu.grad, 5 * tol, f"grad {name}")


@pytest.mark.parametrize("mixer", [BiMambaV2, DecomposedBiMamba])
def test_mixers_cuda_match_cpu(mixer):
    compare_module(mixer(64), (torch.randn(2, 2304, 64), torch.tensor([2304, 1500])))


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_blocks_cuda_match_cpu(block):
    module = BLOCKS[block](64, **({"window_size": 19} if block == "window_attn" else {}))
    module.eval()  # no drop-path randomness between the two devices
    mask = torch.ones(2, 1, 2304, dtype=torch.bool)
    mask[1, :, 1500:] = False
    compare_module(module, (torch.randn(2, 64, 2304), mask))


def thumos_batch(cfg, length: int = 2304):
    samples = [VideoSample(f"v{i}", torch.randn(cfg.dataset.input_dim, length),
                           torch.tensor([[100.0, 300.0], [900.0, 950.0], [1500.0, 2100.0]]),
                           torch.tensor([0, 3, 7]), 30.0, length * 4 / 30.0, 4.0, 16.0)
               for i in range(2)]
    return collate(samples, cfg.dataset.max_seq_len, 1, is_training=True)


@pytest.mark.parametrize("block", ["dbm", "vim", "winattn"])
def test_thumos_model_train_step_cuda_matches_cpu(block):
    cfg = load_config(f"configs/thumos_internvideo2_6b_{block}.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.train, cfg.test).train()
    for m in model.modules():  # no randomness: the CPU and CUDA generators differ
        if hasattr(m, "drop_prob"):
            m.drop_prob = 0.0
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    gpu = copy.deepcopy(model).cuda()
    batch = thumos_batch(cfg)
    losses_cpu, losses_gpu = model(batch), gpu(batch.to("cuda"))
    for key in losses_cpu:
        scaled_close(losses_gpu[key], losses_cpu[key], 1e-3, key)
    sum(losses_cpu.values()).backward()
    sum(losses_gpu.values()).backward()
    for (name, p_cpu), p_gpu in zip(model.named_parameters(), gpu.parameters()):
        if p_cpu.grad is not None:
            scaled_close(p_gpu.grad, p_cpu.grad, 1e-2, f"grad {name}")


def test_loader_batches_in_pinned_memory_reach_the_gpu_unchanged():
    samples = [VideoSample(f"v{i}", torch.randn(32, 100 + 50 * i), torch.tensor([[5.0, 20.0]]),
                           torch.tensor([1]), 30.0, 20.0, 4.0, 16.0) for i in range(4)]
    loader = torch.utils.data.DataLoader(
        samples, batch_size=2, pin_memory=True, num_workers=2,
        collate_fn=functools.partial(collate, max_seq_len=256, size_divisor=1, is_training=True))
    for batch in loader:
        assert batch.feats.is_pinned() and batch.masks.is_pinned(), \
            "Batch needs pin_memory() for DataLoader(pin_memory=True) to pin it"
        on_gpu = batch.to("cuda")
        torch.cuda.synchronize()
        assert torch.equal(on_gpu.feats.cpu(), batch.feats)
        assert torch.equal(on_gpu.masks.cpu(), batch.masks)
