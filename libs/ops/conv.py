"""Causal depthwise conv1d (Mamba's short convolution) with one dispatcher.

Contract: the `causal_conv1d` package's `causal_conv1d_fn(x, weight, bias, activation)`:
each channel d is convolved with its own kernel weight[d] of width W over the past W-1 steps
(zero left padding), so out[:, :, t] depends on x[:, :, t-W+1 .. t] only; output length L.

Backends:
- "cuda": the causal-conv1d package's kernel, for CUDA tensors, when it really works here
  (compiled symbol present, first tiny call matches the reference: libs/ops/_gpu.py) and the
  inputs are inside its limits (widths 2-4, no float64); otherwise "auto" falls back, logged once.
- "ext": the C++ CPU kernel `libs._C.causal_conv1d_fwd/bwd` (csrc/causal_conv1d_cpu.cpp): SiLU
  fused, rows read in place (any batch / channel strides, stride 1 along L), a hand-written
  backward that recomputes the pre-activation from x; float32 / float64 compute.
- "torch": `causal_conv1d_ref` (F.conv1d with groups=D, truncated), the spec.
"auto" picks cuda for CUDA tensors when usable, else ext on CPU when built, else torch; the
process default can be forced with `set_default_backend` or LIBS_CONV_BACKEND.
On CPU, F.conv1d's depthwise backward costs about as much as the whole C++ scan (far more
under load); the ext kernel is memory-bound.
"""
import logging
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from libs.ops import _ext, _gpu
from libs.ops._ext import DefaultBackend, log_once, note_once
from libs.ops.scan import EXT_BUILD, _row_major, _rows


BACKENDS = ("auto", "cuda", "ext", "torch")
ACTIVATIONS = (None, "silu", "swish")
ENV_BACKEND = "LIBS_CONV_BACKEND"
SELF_TEST_TOL = 1e-3
_default = DefaultBackend("causal_conv1d", ENV_BACKEND, BACKENDS)


def set_default_backend(name: Optional[str]) -> None:
    """Force the backend of every `causal_conv1d(backend=None)` call (None: LIBS_CONV_BACKEND,
    else "auto")."""
    _default.set(name)


def default_backend() -> str:
    """The backend of `causal_conv1d(backend=None)`: set_default_backend, else LIBS_CONV_BACKEND."""
    return _default.get()


def _on_gpu(x: Tensor) -> bool:
    """Whether x is on a device the CUDA kernel serves (the seam tests use to run fakes on CPU)."""
    return x.is_cuda


def ext_has_conv() -> bool:
    """True when `libs._C` is built with the CPU causal conv1d."""
    return _ext.ext_has("causal_conv1d_fwd")


def conv_backends() -> dict:
    """The backend that backend="auto" would run, per device: {"cpu": ..., "cuda": ...}."""
    return {
        "cpu": "ext" if ext_has_conv() else "torch",
        "cuda": "cuda" if _gpu.probe("causal_conv1d")[0] is not None else "torch",
    }


def _check_activation(activation: Optional[str]) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"causal_conv1d: activation must be one of {ACTIVATIONS}, got {activation!r}"
        )


def causal_conv1d_ref(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: Optional[str] = None
) -> Tensor:
    """Pure-PyTorch causal depthwise conv1d: the spec of every backend.

    Args:
        x: [B, D, L] input. weight: [D, W] one kernel per channel. bias: [D] or None.
        activation: None, "silu" or "swish" (the same function).
    Returns:
        [B, D, L] in x's dtype: out[b, d, t] = act(bias[d] + sum_k weight[d, k] x[b, d, t-W+1+k]),
        with x = 0 before t = 0. Computed in weight's dtype.
    """
    _check_activation(activation)
    dim, width = weight.shape
    out = F.conv1d(x.to(weight.dtype), weight.unsqueeze(1), bias, padding=width - 1, groups=dim)
    out = out[..., : x.shape[-1]]  # [B, D, L]: drop the outputs that would see the future
    if activation is not None:
        out = F.silu(out)
    return out.to(x.dtype)


def _conv_dtype(weight: Tensor) -> torch.dtype:
    """The ext kernel's compute dtype: float64 for float64 weights, else float32 (the reference
    computes in weight's dtype; bf16 / fp16 weights are computed in float32 here)."""
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def _ext_args(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> tuple:
    """x with stride 1 along L (batch / channel strides kept: a channel slice is not copied),
    weight and bias, all in the compute dtype."""
    cdt = _conv_dtype(weight)
    return _row_major(x, cdt), weight.to(cdt), None if bias is None else bias.to(cdt)


class _CausalConv1dExt(torch.autograd.Function):
    """The C++ CPU kernel. Saves only the inputs: the backward recomputes the pre-activation."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu):
        out = _ext._C.causal_conv1d_fwd(*_ext_args(x, weight, bias), silu)  # [B, D, L]
        ctx.silu = silu
        ctx.save_for_backward(x, weight, bias)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, dout):
        x, weight, bias = ctx.saved_tensors
        args = _ext_args(x, weight, bias)
        dout = _row_major(dout, args[0].dtype)
        dx, dweight, dbias = _ext._C.causal_conv1d_bwd(*args, dout, ctx.silu)
        dbias = None if bias is None else dbias.to(bias.dtype)
        return dx.to(x.dtype), dweight.to(weight.dtype), dbias, None


def _ext_fits(x: Tensor, weight: Tensor) -> bool:
    """The shapes and devices the ext kernel takes: x [B, D, L] and weight [D, W] on CPU."""
    return x.dim() == 3 and weight.dim() == 2 and x.device.type == "cpu" \
        and weight.device.type == "cpu"


def _run_cuda(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: Optional[str]):
    """causal_conv1d_fn(x, weight, bias, activation=...): x with stride 1 along L (so the
    channel-last path and its rules are never taken); the arguments after bias changed between
    releases, hence activation by keyword."""
    fn = _gpu.probe("causal_conv1d")[0]
    return fn(_rows(x), weight.contiguous(), None if bias is None else bias.contiguous(),
              activation=activation)


def _tiny_conv(device: torch.device) -> float:
    """Forward + backward of the kernel on a [1, 8, 16] width-4 SiLU problem on `device`; the max
    relative error of the output and gradients against the float64 CPU reference."""
    g = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=g) for k, s in (("x", (1, 8, 16)), ("weight", (8, 4)),
                                                         ("bias", (8,)))}
    return _gpu.fwd_bwd_error(lambda **t: _run_cuda(**t, activation="silu"),
                              lambda **t: causal_conv1d_ref(**t, activation="silu"), base, device)


def _check_explicit(backend: str, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
    """Raise, with the reason and the fix, when an explicitly requested backend cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"causal_conv1d: unknown backend {backend!r}, expected one of {BACKENDS}")
    if backend == "cuda":
        if not _on_gpu(x):
            raise ValueError(f"causal_conv1d: backend 'cuda' needs CUDA tensors, got {x.device.type} "
                             "tensors; use backend='auto' (it picks 'ext' or 'torch' on CPU)")
        fn, why = _gpu.probe("causal_conv1d")
        if fn is None:
            raise RuntimeError(f"causal_conv1d: backend 'cuda' is unavailable: {why}. {_gpu.CONV_FIX}")
        reason = _gpu.conv_unfit(x, weight, bias)
        if reason is not None:
            raise ValueError(f"causal_conv1d: backend 'cuda' cannot take these inputs: {reason}; "
                             "use backend='auto'")
    if backend == "ext":
        if not ext_has_conv():
            raise RuntimeError(
                f"causal_conv1d: libs._C has no CPU causal conv1d. Build it: {EXT_BUILD}"
            )
        if not _ext_fits(x, weight):
            raise ValueError("causal_conv1d: backend 'ext' needs CPU tensors x [B, D, L] and "
                             f"weight [D, W], got x {tuple(x.shape)} on {x.device.type}, weight "
                             f"{tuple(weight.shape)} on {weight.device.type}; use backend='torch'")


def _auto_gpu(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> str:
    """"cuda" when causal-conv1d is installed, works on this device and takes these inputs."""
    fn, why = _gpu.probe("causal_conv1d")
    if fn is None:
        note_once("causal_conv1d", "torch-on-cuda",
                  f"{why}; using F.conv1d. Fix: {_gpu.CONV_FIX}", logging.WARNING)
        return "torch"
    reason = _gpu.conv_unfit(x, weight, bias)
    if reason is not None:
        note_once("causal_conv1d", f"cuda-unfit:{reason}",
                  f"backend 'cuda' cannot take these inputs ({reason}); falling back to 'torch'")
        return "torch"
    ok = _gpu.self_test("causal_conv1d[cuda]", x.device, lambda: _tiny_conv(x.device),
                        SELF_TEST_TOL, _gpu.CONV_FIX, "torch")
    return "cuda" if ok else "torch"


def _pick_backend(backend: str, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> str:
    """Resolve "auto" by device and capability; raise when an explicit backend cannot run."""
    _check_explicit(backend, x, weight, bias)
    if backend != "auto":
        return backend
    if _on_gpu(x):
        return _auto_gpu(x, weight, bias)
    return "ext" if ext_has_conv() and _ext_fits(x, weight) else "torch"


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    activation: Optional[str] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """Causal depthwise conv1d with causal-conv1d's `causal_conv1d_fn` contract.

    Args:
        x: [B, D, L]. weight: [D, W]. bias: [D] or None. activation: None | "silu" | "swish".
        backend: "auto" | "cuda" | "ext" | "torch"; None: `default_backend()`. An explicit
            backend raises (with the fix) when it cannot run these inputs.
    Returns:
        [B, D, L] in x's dtype.
    """
    _check_activation(activation)
    name = _pick_backend(default_backend() if backend is None else backend, x, weight, bias)
    log_once("causal_conv1d", name)
    if name == "cuda":
        return _run_cuda(x, weight, bias, activation)
    if name == "ext":
        return _CausalConv1dExt.apply(x, weight, bias, activation is not None)
    return causal_conv1d_ref(x, weight, bias, activation)
