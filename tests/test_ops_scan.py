"""Selective scan: the reference against hand-computed values, the C++ kernel ("ext") and the
CUDA kernel against the reference, and the dispatcher's choices and errors."""
import math
import re

import pytest
import torch

from libs.ops import _ext, scan
from libs.ops.scan import scan_backends, selective_scan, selective_scan_ref

needs_ext = pytest.mark.skipif(not scan.ext_has_scan(), reason="libs._C has no selective scan")
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch=2, dim=3, dstate=4, length=7, groups=None, dtype=torch.float64,
                z=True, D=True, bias=True, softplus=True, device="cpu"):
    """Inputs in a numerically tame range. Without softplus, delta must stay positive or the
    recurrence grows exponentially (the reference overflows too)."""
    kw = dict(dtype=dtype, device=device)
    if softplus:
        delta = torch.randn(batch, dim, length, **kw) * 0.5
        delta_bias = torch.randn(dim, **kw) * 0.3 - 0.5
    else:
        delta = torch.rand(batch, dim, length, **kw) * 0.2 + 0.01
        delta_bias = torch.rand(dim, **kw) * 0.05
    bc = (batch, dstate, length) if groups is None else (batch, groups, dstate, length)
    return dict(
        u=torch.randn(batch, dim, length, **kw), delta=delta,
        A=-(torch.rand(dim, dstate, **kw) * 1.5 + 0.1),
        B=torch.randn(*bc, **kw), C=torch.randn(*bc, **kw),
        D=torch.randn(dim, **kw) if D else None,
        z=torch.randn(batch, dim, length, **kw) if z else None,
        delta_bias=delta_bias if bias else None,
    )


def run_with_grads(inputs, softplus, backend, last_state=False, dtype=None):
    """Forward with `backend` on copies of `inputs` (cast to dtype), backward with a fixed
    output gradient; returns (out, last_state or None, {name: grad})."""
    leaves = {k: None if v is None else v.detach().to(dtype or v.dtype).requires_grad_()
              for k, v in inputs.items()}
    res = selective_scan(**leaves, delta_softplus=softplus, return_last_state=last_state,
                         backend=backend)
    out, last = res if last_state else (res, None)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    loss = (out * weight).sum() + (last.sum() if last_state else 0)
    loss.backward()
    return out, last, {k: v.grad for k, v in leaves.items() if v is not None}


def assert_close_scaled(actual, expected, rtol, name=""):
    """Elementwise closeness with the absolute tolerance scaled to the tensor's magnitude."""
    expected = expected.to(actual.dtype)
    atol = rtol * max(expected.abs().max().item(), 1e-6)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


# ----------------------------------------------------------------------------- reference ---

def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _silu(x: float) -> float:
    return x / (1 + math.exp(-x))


def _t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_ref_two_step_hand_computed():
    """B = D = 1, N = 2, L = 2: the recurrence of reference-spec §5.5 written out in scalars."""
    u, delta, bias, A = [1.0, -2.0], [0.3, -0.4], 0.1, [-1.0, -0.5]
    Bm, Cm, Dk, z = [[0.5, 1.0], [-1.0, 2.0]], [[2.0, 0.5], [1.0, -1.0]], 0.7, [0.2, -1.3]
    h, expected = [0.0, 0.0], []
    for t in range(2):
        dt = _softplus(delta[t] + bias)
        h = [math.exp(dt * A[n]) * h[n] + dt * Bm[n][t] * u[t] for n in range(2)]
        y = sum(Cm[n][t] * h[n] for n in range(2)) + Dk * u[t]
        expected.append(y * _silu(z[t]))
    out, last = selective_scan_ref(
        _t64([[u]]), _t64([[delta]]), _t64([A]), _t64([Bm]), _t64([Cm]), _t64([Dk]), _t64([[z]]),
        _t64([bias]), delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, _t64([[expected]]))
    torch.testing.assert_close(last, _t64([[h]]))


def test_ref_graph_has_no_per_step_select():
    """Indexing x[:, :, t] in the loop records SelectBackward nodes whose backward allocates a
    full [B, D, L, N] zero tensor each, making the backward quadratic in L; unbind does not."""
    x = {k: v.requires_grad_() for k, v in make_inputs(length=6).items()}
    out = selective_scan_ref(**x, delta_softplus=True)
    seen, stack, names = set(), [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    assert "UnbindBackward0" in names and "SelectBackward0" not in names


@pytest.mark.parametrize("layout", ["bnl", "bgnl", "dn"])
def test_ref_bc_layouts_agree(layout):
    """[B, G, N, L] with G = 1 and time-invariant [D, N] are the same scan as expanded [B, N, L]."""
    x = make_inputs(dim=4, length=5)
    if layout == "bgnl":
        y = dict(x, B=x["B"].unsqueeze(1), C=x["C"].unsqueeze(1))
    elif layout == "dn":
        B, C = torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
        x = dict(x, B=B, C=C)
        # the same per-channel B/C as [B, G = D, N, L]
        y = dict(x, B=B[None, :, :, None].expand(2, 4, 4, 5),
                 C=C[None, :, :, None].expand(2, 4, 4, 5))
    else:
        y = x
    torch.testing.assert_close(selective_scan_ref(**x, delta_softplus=True),
                               selective_scan_ref(**y, delta_softplus=True))


def test_ref_matches_mamba_ssm_reference():
    """Our spec equals mamba-ssm's own `selective_scan_ref` (only where mamba-ssm imports)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref as mamba_ref
    except Exception as exc:  # not installed, or installed without its CUDA build
        pytest.skip(f"mamba-ssm not importable: {exc}")
    for groups in (None, 2):
        x = make_inputs(dim=4, length=9, groups=groups, dtype=torch.float32)
        ours = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
        theirs = mamba_ref(**x, delta_softplus=True, return_last_state=True)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ ext vs reference ---

EXT_CASES = [  # batch, dim, dstate, length, groups, z, D, bias, softplus
    (2, 3, 4, 7, None, True, True, True, True),
    (1, 5, 16, 130, None, True, True, True, True),     # several checkpoint chunks, odd L
    (2, 17, 16, 1, None, True, True, True, True),      # L = 1
    (2, 4, 8, 200, 2, False, True, False, False),      # groups, no z, no softplus
    (1, 6, 2, 67, 3, True, False, True, False),        # N = 2, G = 3
    (2, 5, 20, 65, None, False, False, False, True),   # N = 20: two 16-lane vectors
    (1, 3, 40, 70, None, True, True, False, True),     # N = 40: runtime vector count
]


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", EXT_CASES)
def test_ext_matches_reference(case, dtype):
    """Forward, last state and every gradient of the C++ kernel against the float64 reference."""
    batch, dim, dstate, length, groups, z, D, bias, softplus = case
    x = make_inputs(batch, dim, dstate, length, groups, z=z, D=D, bias=bias, softplus=softplus)
    ref = run_with_grads(x, softplus, "torch", last_state=True)
    ext = run_with_grads(x, softplus, "ext", last_state=True, dtype=dtype)
    rtol = 2e-4 if dtype == torch.float32 else 1e-9
    assert ext[0].dtype == dtype and ext[1].dtype == dtype
    assert_close_scaled(ext[0], ref[0], rtol, "out")
    assert_close_scaled(ext[1], ref[1], rtol, "last_state")
    assert set(ext[2]) == set(ref[2]) == {k for k in GRAD_NAMES if x[k] is not None}
    for name in ext[2]:
        assert ext[2][name].shape == x[name].shape
        assert_close_scaled(ext[2][name], ref[2][name], rtol, f"d{name}")


@needs_ext
@pytest.mark.parametrize("groups", [None, 2])
def test_ext_gradcheck(groups):
    x = make_inputs(batch=2, dim=4, dstate=3, length=6, groups=groups)
    leaves = [v.requires_grad_() for v in x.values()]

    def fn(*args):
        return selective_scan(*args, delta_softplus=True, return_last_state=True, backend="ext")

    assert torch.autograd.gradcheck(fn, leaves)


@needs_ext
def test_ext_strided_inputs():
    """Rows sliced out of bigger tensors (stride 1 along L) and B/C in the (b l) n layout of
    x_proj's output are read in place; a non-unit L stride is copied first. Same results."""
    batch, dim, dstate, length = 2, 6, 16, 70
    x = make_inputs(batch, dim, dstate, length, dtype=torch.float32)
    xz = torch.randn(batch, 2 * dim, length)
    xz[:, :dim], xz[:, dim:] = x["u"], x["z"]
    dbl = torch.randn(batch, length, 3 * dstate)  # as x_proj: [(b l), dt_rank + 2N]
    b_rows, c_rows = dbl[..., dstate:2 * dstate], dbl[..., 2 * dstate:]  # [B, L, N] each
    b_rows.copy_(x["B"].transpose(1, 2))
    c_rows.copy_(x["C"].transpose(1, 2))
    delta_t = x["delta"].transpose(1, 2).contiguous().transpose(1, 2)  # stride along L = D
    strided = dict(x, u=xz[:, :dim], z=xz[:, dim:], delta=delta_t,
                   B=b_rows.transpose(1, 2), C=c_rows.transpose(1, 2))
    assert strided["u"].stride(-1) == 1 and not strided["u"].is_contiguous()
    assert strided["B"].stride(-1) != 1 and delta_t.stride(-1) != 1
    a = run_with_grads(x, True, "ext")
    b = run_with_grads(strided, True, "ext")
    torch.testing.assert_close(b[0], a[0])
    for name in a[2]:
        torch.testing.assert_close(b[2][name], a[2][name], msg=name)


@needs_ext
def test_ext_low_precision_inputs_upcast():
    """bf16 inputs are computed in float32; out and grads come back in bf16."""
    x = make_inputs(2, 4, 16, 33, dtype=torch.float32)
    x = dict(x, u=x["u"].bfloat16(), delta=x["delta"].bfloat16(), z=x["z"].bfloat16())
    ref = run_with_grads({k: None if v is None else v.float() for k, v in x.items()}, True, "torch")
    ext = run_with_grads(x, True, "ext")
    assert ext[0].dtype == torch.bfloat16 and ext[2]["u"].dtype == torch.bfloat16
    assert ext[2]["A"].dtype == torch.float32
    assert_close_scaled(ext[0].float(), ref[0], 1e-2, "out")
    assert_close_scaled(ext[2]["delta"].float(), ref[2]["delta"], 2e-2, "ddelta")


@needs_ext
def test_ext_backward_is_deterministic():
    x = make_inputs(2, 64, 16, 100, dtype=torch.float32)
    a, b = run_with_grads(x, True, "ext"), run_with_grads(x, True, "ext")
    for name in a[2]:
        assert torch.equal(a[2][name], b[2][name]), name


@needs_ext
def test_ext_saves_checkpoints_not_per_step_states():
    """At L = 4096 the kernel saves its inputs plus one state per 64 steps ([B, D, L/64, N]);
    a per-step history ([B, D, L, N], 16x the inputs here) would fail the bound."""
    batch, dim, dstate, length = 1, 32, 16, 4096
    x = make_inputs(batch, dim, dstate, length, dtype=torch.float32)
    x = {k: v.requires_grad_() for k, v in x.items()}
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = selective_scan(**x, delta_softplus=True, backend="ext")
    inputs = sum(v.numel() * v.element_size() for v in x.values())
    checkpoints = batch * dim * (length // 64) * dstate * 4
    assert sum(saved) <= inputs + checkpoints
    out.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in x.values())


@needs_ext
def test_ext_without_grad_saves_nothing(monkeypatch):
    """Under no_grad the kernel writes no checkpoints, even for inputs that require grad (model
    parameters at inference)."""
    x = {k: v.requires_grad_() for k, v in make_inputs(dtype=torch.float32).items()}
    kernel, asked = _ext._C, []

    class Recording:  # libs._C whose forward records its `save_states` argument
        def __getattr__(self, name):
            return getattr(kernel, name)

        def selective_scan_fwd(self, *args):
            asked.append(args[-1])
            return kernel.selective_scan_fwd(*args)

    monkeypatch.setattr(_ext, "_C", Recording())
    with torch.no_grad():
        out = selective_scan(**x, delta_softplus=True, backend="ext")
    selective_scan(**x, delta_softplus=True, backend="ext").sum().backward()
    assert asked == [False, True]
    ref = selective_scan_ref(**x, delta_softplus=True)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ dispatch ---

def test_dispatch_without_ext(monkeypatch):
    monkeypatch.setattr(_ext, "_C", None)
    x = make_inputs()
    assert scan_backends()["cpu"] == "torch"
    torch.testing.assert_close(selective_scan(**x), selective_scan_ref(**x))
    with pytest.raises(RuntimeError, match=re.escape(_ext.BUILD_CMD)):
        selective_scan(**x, backend="ext")


def test_dispatch_errors():
    x = make_inputs()
    with pytest.raises(ValueError, match="unknown backend"):
        selective_scan(**x, backend="bogus")
    with pytest.raises(ValueError, match="CUDA tensors"):
        selective_scan(**x, backend="cuda")


def test_time_invariant_bc_runs_on_torch():
    x = dict(make_inputs(dim=3, dstate=4), B=torch.randn(3, 4, dtype=torch.float64),
             C=torch.randn(3, 4, dtype=torch.float64))
    torch.testing.assert_close(selective_scan(**x), selective_scan_ref(**x))
    if scan.ext_has_scan():
        with pytest.raises(ValueError, match="variable"):
            selective_scan(**x, backend="ext")


def test_scan_backends_report():
    report = scan_backends()
    assert set(report) == {"cpu", "cuda"}
    assert report["cpu"] == ("ext" if scan.ext_has_scan() else "torch")


# ---------------------------------------------------------------------------------- CUDA ---

@pytest.mark.cuda
@pytest.mark.parametrize("groups", [None, 2])
def test_cuda_auto_matches_reference(groups):
    """Whatever "auto" runs on the GPU (mamba-ssm's kernel, or the torch fallback) matches the
    float64 CPU reference, forward and gradients (mamba-ssm's float32 tolerances)."""
    x = make_inputs(2, 8, 16, 300, groups, dtype=torch.float32)
    ref = run_with_grads(x, True, "torch", dtype=torch.float64)
    gpu = run_with_grads({k: None if v is None else v.cuda() for k, v in x.items()}, True, "auto")
    assert_close_scaled(gpu[0].cpu(), ref[0], 1e-3, "out")
    for name in gpu[2]:
        assert_close_scaled(gpu[2][name].cpu(), ref[2][name], 2e-3, f"d{name}")


@pytest.mark.cuda
def test_cuda_kernel_explicit():
    if scan_backends()["cuda"] != "cuda":
        pytest.skip("mamba-ssm's CUDA kernel is not importable")
    x = {k: None if v is None else v.cuda() for k, v in make_inputs(dtype=torch.float32).items()}
    out = selective_scan(**x, delta_softplus=True, backend="cuda")
    ref = selective_scan_ref(**x, delta_softplus=True)
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)
