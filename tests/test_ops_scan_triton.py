"""Triton selective scan against the float64 PyTorch reference, forward and every gradient.

On CPU the kernels run under Triton's interpreter: the `interpret` fixture sets
TRITON_INTERPRET=1 for one test only (monkeypatch restores it) and shrinks the chunk to 16
steps, so short sequences still span several chunks. The interpreter runs each
`tl.associative_scan` element by element in Python, so shapes are small. `cuda` tests run the
compiled kernels on a GPU.
"""
import importlib
import importlib.util
import sys

import pytest
import torch

from libs.ops import scan_triton
from libs.ops.scan import selective_scan_ref
from libs.ops.scan_triton import selective_scan_triton, triton_status
from tests.test_ops_scan import GRAD_NAMES, assert_close_scaled, make_inputs

try:  # imported before any test sets TRITON_INTERPRET, on purpose: the kernels must run under
    import triton  # noqa: F401  (the interpreter whatever the import order, as in a full suite)
except ImportError:
    pass

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="triton is not installed (pip install triton==3.7.1)")


@pytest.fixture
def interpret(monkeypatch):
    """The kernel module in interpreter mode, with 16-step chunks."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    kernels = scan_triton._kernels()
    monkeypatch.setattr(kernels, "CHUNK", 16)
    return kernels


def run(fn, inputs, softplus, last_state, dtype=None, device="cpu", weight_dtype=None):
    """fn on leaf copies of inputs (cast to dtype, moved to device), backward with fixed output
    (and last-state) weights, rounded to weight_dtype (default: out's dtype); returns
    (out, last or None, {name: grad})."""
    leaves = {k: None if v is None else v.detach().to(device, dtype or v.dtype).requires_grad_()
              for k, v in inputs.items()}
    res = fn(**leaves, delta_softplus=softplus, return_last_state=last_state)
    out, last = res if last_state else (res, None)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(out.shape, generator=gen).to(weight_dtype or out.dtype)
    loss = (out * weight.to(out)).sum()  # dL/dout = weight
    if last_state:
        loss = loss + (last * torch.randn(last.shape, generator=gen).to(last)).sum()
    loss.backward()
    return out, last, {k: v.grad for k, v in leaves.items() if v is not None}


def compare(inputs, softplus, last_state, rtol, dtype=torch.float32, device="cpu"):
    """Triton on inputs cast to dtype (A stays fp32, as in Mamba) vs the float64 reference on
    the same rounded values; out / grads in the inputs' dtypes, last_state in fp32."""
    low = {k: None if v is None else v.to(torch.float32 if k == "A" else dtype)
           for k, v in inputs.items()}
    ref = run(selective_scan_ref, {k: None if v is None else v.double() for k, v in low.items()},
              softplus, last_state, weight_dtype=dtype)  # the same dL/dout as the kernel gets
    tri = run(selective_scan_triton, low, softplus, last_state, device=device)
    assert tri[0].dtype == dtype
    assert_close_scaled(tri[0].double().cpu(), ref[0], rtol, "out")
    if last_state:
        assert tri[1].dtype == torch.float32
        assert_close_scaled(tri[1].double().cpu(), ref[1], rtol, "last_state")
    assert set(tri[2]) == set(ref[2]) == {k for k in GRAD_NAMES if inputs[k] is not None}
    for name, grad in tri[2].items():
        assert grad.shape == inputs[name].shape and grad.dtype == low[name].dtype, name
        assert_close_scaled(grad.double().cpu(), ref[2][name], rtol, f"d{name}")


CASES = [  # batch, dim, dstate, length, groups, z, D, bias, softplus, last_state
    (2, 4, 4, 37, None, True, True, True, True, True),     # 3 chunks, L not a multiple of 16
    (1, 6, 3, 32, 3, False, True, True, False, True),      # exactly 2 chunks, G = 3, N padded
    (2, 4, 5, 20, 2, True, False, False, True, False),     # G = 2, N = 5 (8 lanes)
    (2, 3, 4, 1, None, True, True, True, True, True),      # L = 1
    (1, 2, 2, 17, None, False, False, False, False, True),  # nothing optional
]


@needs_triton
@pytest.mark.parametrize("case", CASES)
def test_matches_reference_fp32(interpret, case):
    batch, dim, dstate, length, groups, z, D, bias, softplus, last = case
    x = make_inputs(batch, dim, dstate, length, groups, z=z, D=D, bias=bias, softplus=softplus)
    compare(x, softplus, last, rtol=1e-4)


@needs_triton
def test_default_chunk_spans_two_chunks(monkeypatch):
    """The shipped chunk length (CHUNK steps): L = CHUNK + 2 runs two chunks."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    length = scan_triton._kernels().CHUNK + 2
    assert scan_triton._kernels().tile_sizes(2, length)[1] == length - 2
    compare(make_inputs(1, 2, 2, length), True, True, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(interpret, dtype):
    """bf16 / fp16 inputs (A kept fp32, as Mamba does) are computed in fp32: out and gradients
    come back in the inputs' dtypes, within their rounding of the reference."""
    compare(make_inputs(2, 4, 4, 37, groups=2), True, True, rtol=1e-2, dtype=dtype)


@needs_triton
def test_strided_inputs(interpret):
    """u / z sliced out of one xz tensor and B / C in x_proj's [B, L, N] layout (L stride != 1)
    are read in place, with the same results as contiguous copies."""
    batch, dim, dstate, length = 2, 3, 4, 21
    x = make_inputs(batch, dim, dstate, length, dtype=torch.float32)
    xz = torch.cat([x["u"], x["z"]], dim=1)  # [B, 2D, L]
    dbl = torch.cat([x["B"].transpose(1, 2), x["C"].transpose(1, 2)], dim=2)  # [B, L, 2N]
    strided = dict(x, u=xz[:, :dim], z=xz[:, dim:], B=dbl[..., :dstate].transpose(1, 2),
                   C=dbl[..., dstate:].transpose(1, 2))
    assert not strided["u"].is_contiguous() and strided["B"].stride(-1) != 1
    a = run(selective_scan_triton, x, True, True)
    b = run(selective_scan_triton, strided, True, True)
    torch.testing.assert_close(b[0], a[0])
    for name in a[2]:
        torch.testing.assert_close(b[2][name], a[2][name], msg=name)


def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves while fn runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        res = fn()
    return sum(storages.values()), res


@needs_triton
def test_saves_checkpoints_not_per_step_states(monkeypatch):
    """The forward saves its inputs plus one state per chunk (of the shipped length); a
    per-step history [B, D, N, L] alone would be larger than that bound."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    batch, dim, dstate, length = 1, 8, 8, 512
    x = {k: v.requires_grad_() for k, v in make_inputs(batch, dim, dstate, length,
                                                        dtype=torch.float32).items()}
    saved, _ = _saved_bytes(lambda: selective_scan_triton(**x, delta_softplus=True))
    inputs = sum(v.numel() * v.element_size() for v in x.values())
    np_, ch = scan_triton._kernels().tile_sizes(dstate, length)
    checkpoints = batch * dim * (length // ch) * np_ * 4
    assert saved <= inputs + checkpoints < batch * dim * dstate * length * 4


@needs_triton
def test_no_grad_saves_nothing(interpret):
    x = {k: v.requires_grad_() for k, v in make_inputs(dtype=torch.float32).items()}
    with torch.no_grad():
        saved, out = _saved_bytes(lambda: selective_scan_triton(**x, delta_softplus=True))
    assert saved == 0
    assert_close_scaled(out, selective_scan_ref(**x, delta_softplus=True).detach(), 1e-4, "out")


@needs_triton
def test_empty_batch(interpret):
    x = make_inputs(batch=0, dim=3, dstate=4, length=5, dtype=torch.float32)
    out, last = selective_scan_triton(**x, delta_softplus=True, return_last_state=True)
    assert out.shape == (0, 3, 5) and last.shape == (0, 3, 4)


@needs_triton
def test_dispatcher_runs_triton(interpret):
    """selective_scan(backend="triton") reaches this kernel (the interpreter makes it usable on
    CPU); the probe cache is cleared before and after so no result leaks into other tests."""
    from libs.ops import _gpu
    from libs.ops.scan import selective_scan

    _gpu.reset()
    try:
        x = make_inputs(2, 4, 4, 23, groups=2, dtype=torch.float32)
        out, last = selective_scan(**x, delta_softplus=True, return_last_state=True,
                                   backend="triton")
    finally:
        _gpu.reset()
    direct = selective_scan_triton(**x, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, direct[0], rtol=0, atol=0)
    torch.testing.assert_close(last, direct[1], rtol=0, atol=0)


def _signature(kernel, constexprs: dict, in_dtype: str) -> dict:
    """Triton signature: constexprs, `*_ptr` pointers (inputs / their gradients in in_dtype),
    and int32 sizes and strides."""
    low = ("u_", "dt_", "z_", "B_", "C_", "out_", "dout_", "du_", "ddt_", "dz_")
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = in_dtype if name.startswith(low) else "*fp32"
        else:
            sig[name] = "i32"
    return sig


@needs_triton
@pytest.mark.parametrize("in_dtype, with_options", [("*bf16", True), ("*fp32", False)])
def test_kernels_compile_for_sm90(monkeypatch, tmp_path, in_dtype, with_options):
    """The interpreter accepts code the compiler rejects: compile both kernels for an H100
    (Triton frontend, MLIR passes, PTX, and the ptxas that ships with triton), no GPU needed."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    kernels = scan_triton._kernels()
    flags = {k: with_options for k in ("HAS_D", "HAS_Z", "HAS_BIAS", "SOFTPLUS")}
    np_, ch = kernels.tile_sizes(16, 2304)
    for kernel, extra, warps in ((kernels._scan_fwd_kernel, {"SAVE": True}, kernels.FWD_WARPS),
                                 (kernels._scan_bwd_kernel, {"HAS_DLAST": True},
                                  kernels.BWD_WARPS)):
        constexprs = dict(flags, **extra, NP=np_, CH=ch)
        source = ASTSource(kernel, _signature(kernel, constexprs, in_dtype), constexprs)
        compiled = triton_compile(source, target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": warps})
        assert compiled.asm["cubin"], kernel.__name__


# --------------------------------------------------------------------- status and errors ---

@needs_triton
def test_status_needs_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    usable, reason = triton_status("cpu")
    assert not usable and "CUDA" in reason and "TRITON_INTERPRET=1" in reason
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        selective_scan_triton(**make_inputs(dtype=torch.float32))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_status("cpu")[0] and triton_status()[0]


def test_status_without_triton(monkeypatch):
    """A missing triton is a clear (False, reason) and a call-time error, never an import error."""
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    usable, reason = triton_status()
    assert not usable and "pip install triton==3.7.1" in reason
    with pytest.raises(RuntimeError, match="triton does not import"):
        selective_scan_triton(**make_inputs(dtype=torch.float32))


def test_module_imports_without_triton(monkeypatch):
    """libs.ops.scan_triton itself never imports triton (so neither does `import libs`)."""
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "libs.ops.scan_triton")
    module = importlib.import_module("libs.ops.scan_triton")
    assert module is not scan_triton and not module.triton_status()[0]


@needs_triton
def test_shape_errors(interpret):
    x = make_inputs(dim=4, dstate=4, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"\[D, N\] B/C run on backend='torch'"):
        selective_scan_triton(**dict(x, B=torch.randn(4, 4)))
    with pytest.raises(ValueError, match="G dividing"):
        selective_scan_triton(**dict(x, C=torch.randn(2, 3, 4, 7)))
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_triton(**dict(x, A=torch.randn(3, 4)))


# ----------------------------------------------------------------------------------- GPU ---

@pytest.mark.cuda
@needs_triton
@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_reference(monkeypatch, groups, dtype):
    """Compiled kernels, several default-size chunks, against the float64 CPU reference."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = make_inputs(2, 8, 16, 300, groups)
    compare(x, True, True, rtol=1e-4 if dtype == torch.float32 else 1e-2, dtype=dtype,
            device="cuda")


@pytest.mark.cuda
@needs_triton
def test_cuda_matches_mamba_ssm(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # not installed, or without its CUDA build
        pytest.skip(f"mamba-ssm not importable: {exc}")
    x = make_inputs(2, 64, 16, 1000, dtype=torch.float32)
    ours = run(selective_scan_triton, x, True, True, device="cuda")
    theirs = run(selective_scan_fn, x, True, True, device="cuda")
    assert_close_scaled(ours[0], theirs[0], 1e-3, "out")
    for name in ours[2]:
        assert_close_scaled(ours[2][name], theirs[2][name], 1e-3, f"d{name}")
