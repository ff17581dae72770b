"""Causal depthwise conv1d: the reference against hand-computed values and a loop, causality,
the C++ kernel ("ext") and the CUDA kernel against the reference, and the dispatcher's choices
and errors."""
import re

import pytest
import torch
import torch.nn.functional as F

from libs.ops import _ext, conv
from libs.ops.conv import causal_conv1d, causal_conv1d_ref, conv_backends

needs_ext = pytest.mark.skipif(not conv.ext_has_conv(), reason="libs._C has no causal conv1d")


def conv_loop(x, weight, bias, activation):
    """out[b, d, t] = act(bias[d] + sum_k weight[d, k] x[b, d, t - W + 1 + k]), x = 0 before 0."""
    width = weight.shape[1]
    out = torch.zeros_like(x) + (0 if bias is None else bias[:, None])
    for t in range(x.shape[-1]):
        for k in range(width):
            src = t - width + 1 + k
            if src >= 0:
                out[..., t] += weight[:, k] * x[..., src]
    return out if activation is None else F.silu(out)


def test_ref_hand_computed():
    """One channel, W = 3, L = 4: out_t = w0 x_{t-2} + w1 x_{t-1} + w2 x_t + b."""
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    weight, bias = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([0.25])
    expected = torch.tensor([[[2.25, 3.25, 4.75, 6.25]]])  # e.g. t=2: 0.5*1 - 1*2 + 2*3 + 0.25
    torch.testing.assert_close(causal_conv1d_ref(x, weight, bias), expected)


@pytest.mark.parametrize("activation", [None, "silu", "swish"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("width", [2, 4])
def test_ref_matches_loop(activation, with_bias, width):
    x = torch.randn(2, 5, 9, dtype=torch.float64)
    weight = torch.randn(5, width, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64) if with_bias else None
    torch.testing.assert_close(causal_conv1d(x, weight, bias, activation),
                               conv_loop(x, weight, bias, activation))


def test_ref_is_causal():
    """Changing x at step t leaves every output before t unchanged."""
    x, weight = torch.randn(1, 3, 12), torch.randn(3, 4)
    y = x.clone()
    y[..., 7:] += torch.randn(1, 3, 5)
    a, b = causal_conv1d(x, weight, None, "silu"), causal_conv1d(y, weight, None, "silu")
    torch.testing.assert_close(a[..., :7], b[..., :7])
    assert not torch.allclose(a[..., 7:], b[..., 7:])


def test_ref_dtype_and_gradcheck():
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    def fn(*args):
        return causal_conv1d(*args, activation="silu")

    assert torch.autograd.gradcheck(fn, (x, weight, bias))
    out = causal_conv1d(x.detach().bfloat16(), weight.detach().float(), bias.detach().float())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 6)


def test_dispatch_errors():
    x, weight = torch.randn(1, 2, 5), torch.randn(2, 4)
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, weight, activation="relu")
    with pytest.raises(ValueError, match="unknown backend"):
        causal_conv1d(x, weight, backend="triton")
    with pytest.raises(ValueError, match="CUDA tensors"):
        causal_conv1d(x, weight, backend="cuda")


def test_dispatch_without_ext(monkeypatch):
    """Without the kernel "auto" runs the reference and an explicit "ext" names the build."""
    monkeypatch.setattr(_ext, "_C", None)
    x, weight, bias = torch.randn(2, 3, 9), torch.randn(3, 4), torch.randn(3)
    assert conv_backends()["cpu"] == "torch"
    torch.testing.assert_close(causal_conv1d(x, weight, bias, "silu"),
                               causal_conv1d_ref(x, weight, bias, "silu"))
    with pytest.raises(RuntimeError, match=re.escape(_ext.BUILD_CMD)):
        causal_conv1d(x, weight, backend="ext")


def test_conv_backends_report():
    report = conv_backends()
    assert set(report) == {"cpu", "cuda"}
    assert report["cpu"] == ("ext" if conv.ext_has_conv() else "torch")


def test_ref_matches_causal_conv1d_package_reference():
    """Our spec equals the causal-conv1d package's own reference (only where it imports)."""
    try:
        from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref as theirs
    except Exception as exc:  # not installed, or installed without its CUDA build
        pytest.skip(f"causal-conv1d not importable: {exc}")
    x, weight, bias = torch.randn(2, 4, 10), torch.randn(4, 4), torch.randn(4)
    torch.testing.assert_close(causal_conv1d_ref(x, weight, bias, "silu"),
                               theirs(x, weight, bias, activation="silu"))


# ------------------------------------------------------------------------ ext vs reference ---

def conv_with_grads(x, weight, bias, activation, backend, grad_out=None):
    """Forward with `backend` on fresh leaves (detach keeps x's strides), backward with
    `grad_out` (default random); returns (out, [dx, dweight, dbias or None], grad_out)."""
    leaves = [t if t is None else t.detach().requires_grad_() for t in (x, weight, bias)]
    out = causal_conv1d(*leaves, activation=activation, backend=backend)
    grad = torch.randn_like(out) if grad_out is None else grad_out
    out.backward(grad)
    return out, [None if t is None else t.grad for t in leaves], grad


def assert_ext_matches_ref(x, weight, bias, activation):
    tol = dict(rtol=1e-5, atol=1e-5) if x.dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    out, grads, g = conv_with_grads(x, weight, bias, activation, "ext")
    ref, ref_grads, _ = conv_with_grads(x, weight, bias, activation, "torch", g)
    assert out.dtype == ref.dtype and out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, **tol)
    for name, a, b in zip(("dx", "dweight", "dbias"), grads, ref_grads):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape and a.dtype == b.dtype, name
            torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: {m}")


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("width", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("length", [1, 3, 16, 37, 200])
def test_ext_matches_reference(dtype, activation, with_bias, width, length):
    """Forward and every gradient; lengths below the width, below / at / above one SIMD vector
    (16 float32 lanes), odd; width 5 runs the kernel's any-width path."""
    x = torch.randn(2, 5, length, dtype=dtype)
    weight = torch.randn(5, width, dtype=dtype)
    bias = torch.randn(5, dtype=dtype) if with_bias else None
    assert_ext_matches_ref(x, weight, bias, activation)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ext_strided_input_and_gradient(dtype):
    """x a channel slice of a wider tensor and a batch slice with a gap (rows contiguous in L,
    arbitrary batch / channel strides), and a non-contiguous output gradient: no difference."""
    base = torch.randn(6, 20, 41, dtype=dtype)
    x = base[::2, 3:11]  # [3, 8, 41], strides (2*20*41, 41, 1)
    assert x.stride(-1) == 1 and not x.is_contiguous()
    weight, bias = torch.randn(8, 4, dtype=dtype), torch.randn(8, dtype=dtype)
    assert_ext_matches_ref(x, weight, bias, "silu")
    xt = torch.randn(3, 41, 8, dtype=dtype).transpose(1, 2)  # stride 8 along L: copied
    assert_ext_matches_ref(xt, weight, bias, None)
    g = torch.randn(3, 41, 8, dtype=dtype).transpose(1, 2)  # dout with stride 8 along L
    out, grads, _ = conv_with_grads(x, weight, bias, "silu", "ext", g)
    ref, ref_grads, _ = conv_with_grads(x, weight, bias, "silu", "torch", g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


@needs_ext
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("width", [1, 3, 4, 6])
def test_ext_gradcheck(activation, width):
    x = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, width, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def fn(*args):
        return causal_conv1d(*args, activation=activation, backend="ext")

    assert torch.autograd.gradcheck(fn, (x, weight, bias))
    assert torch.autograd.gradcheck(lambda a, w: fn(a, w, None), (x, weight))


@needs_ext
def test_ext_is_auto_on_cpu_and_matches_at_block_size():
    """THUMOS-like rows (B'=4, E=64 here, L=2304) through "auto": the kernel, within float32
    tolerance of the float64 reference, and deterministic."""
    x = torch.randn(4, 128, 2304)[:, :64]  # the x half of an [x | z] projection
    weight, bias = torch.randn(64, 4) * 0.5, torch.randn(64) * 0.1
    assert conv_backends()["cpu"] == "ext"
    out, grads, g = conv_with_grads(x, weight, bias, "silu", "auto")
    ref, ref_grads, _ = conv_with_grads(x.double(), weight.double(), bias.double(), "silu",
                                        "torch", g.double())
    torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b.float(), rtol=1e-4, atol=1e-3)
    again = conv_with_grads(x, weight, bias, "silu", "auto", g)
    assert torch.equal(again[0], out) and all(torch.equal(a, b) for a, b in zip(again[1], grads))


@needs_ext
def test_ext_dtypes_and_errors():
    """bf16 x with float32 weights: computed in float32, returned in x's dtype, like the
    reference; shapes the kernel does not take raise (explicit "ext") or fall back ("auto")."""
    x = torch.randn(2, 3, 10).bfloat16()
    weight, bias = torch.randn(3, 4), torch.randn(3)
    out = causal_conv1d(x, weight, bias, "silu", backend="ext")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, causal_conv1d_ref(x, weight, bias, "silu"), rtol=2e-2,
                               atol=2e-2)
    unbatched = torch.randn(3, 10)  # [D, L]: F.conv1d's unbatched form, reference only
    torch.testing.assert_close(causal_conv1d(unbatched, weight),
                               causal_conv1d_ref(unbatched, weight))
    with pytest.raises(ValueError, match="backend 'ext' needs"):
        causal_conv1d(unbatched, weight, backend="ext")
    with pytest.raises(RuntimeError, match="weight must be"):
        causal_conv1d(torch.randn(2, 3, 10), torch.randn(4, 4), backend="ext")
    with pytest.raises(RuntimeError, match="bias must be"):
        causal_conv1d(torch.randn(2, 3, 10), weight, torch.randn(4), backend="ext")


@needs_ext
def test_ext_without_grad_and_empty():
    x, weight = torch.randn(2, 3, 10), torch.randn(3, 4)
    with torch.no_grad():
        out = causal_conv1d(x, weight, None, "silu", backend="ext")
    torch.testing.assert_close(out, causal_conv1d_ref(x, weight, None, "silu"))
    empty = causal_conv1d(torch.randn(0, 3, 10), weight, backend="ext")
    assert empty.shape == (0, 3, 10)
    zero_len = torch.randn(2, 3, 0, requires_grad=True)
    out = causal_conv1d(zero_len, weight, backend="ext")
    out.sum().backward()
    assert out.shape == (2, 3, 0) and zero_len.grad.shape == (2, 3, 0)


@pytest.mark.cuda
@pytest.mark.parametrize("activation", [None, "silu"])
def test_cuda_matches_reference(activation):
    """Whatever "auto" runs on the GPU (causal-conv1d's kernel or the torch fallback)."""
    x, weight, bias = torch.randn(2, 64, 300), torch.randn(64, 4), torch.randn(64)
    leaves = [t.cuda().requires_grad_() for t in (x, weight, bias)]
    out = causal_conv1d(*leaves, activation=activation)
    ref_leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ref = causal_conv1d_ref(*ref_leaves, activation=activation)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(ref)
    out.backward(grad.cuda())
    ref.backward(grad)
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-3, atol=1e-3)
