"""Causal depthwise conv1d: the reference against hand-computed values and a loop, causality,
the CUDA kernel against the reference, and the dispatcher's choices and errors."""
import pytest
import torch
import torch.nn.functional as F

from libs.ops.conv import causal_conv1d, causal_conv1d_ref, conv_backends


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
        causal_conv1d(x, weight, backend="ext")
    with pytest.raises(ValueError, match="CUDA tensors"):
        causal_conv1d(x, weight, backend="cuda")


def test_conv_backends_report():
    assert conv_backends()["cpu"] == "torch" and set(conv_backends()) == {"cpu", "cuda"}


def test_ref_matches_causal_conv1d_package_reference():
    """Our spec equals the causal-conv1d package's own reference (only where it imports)."""
    try:
        from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref as theirs
    except Exception as exc:  # not installed, or installed without its CUDA build
        pytest.skip(f"causal-conv1d not importable: {exc}")
    x, weight, bias = torch.randn(2, 4, 10), torch.randn(4, 4), torch.randn(4)
    torch.testing.assert_close(causal_conv1d_ref(x, weight, bias, "silu"),
                               theirs(x, weight, bias, activation="silu"))


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
