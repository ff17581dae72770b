"""Causal depthwise conv1d (Mamba's short convolution) with one dispatcher.

Contract: the `causal_conv1d` package's `causal_conv1d_fn(x, weight, bias, activation)`:
each channel d is convolved with its own kernel weight[d] of width W over the past W-1 steps
(zero left padding), so out[:, :, t] depends on x[:, :, t-W+1 .. t] only; output length L.

Backends:
- "cuda": the causal-conv1d kernel, imported lazily for CUDA tensors.
- "ext": the C++ CPU kernel `libs._C.causal_conv1d_fwd/bwd` (csrc/causal_conv1d_cpu.cpp): SiLU
  fused, rows read in place (any batch / channel strides, stride 1 along L), a hand-written
  backward that recomputes the pre-activation from x; float32 / float64 compute.
- "torch": `causal_conv1d_ref` (F.conv1d with groups=D, truncated), the spec.
"auto" picks cuda for CUDA tensors when importable, else ext on CPU when built, else torch.
On CPU, F.conv1d's depthwise backward costs about as much as the whole C++ scan (far more
under load); the ext kernel is memory-bound.
"""
import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from libs.ops import _ext
from libs.ops._ext import log_once
from libs.ops.scan import EXT_BUILD, _row_major


CAUSAL_CONV1D_INSTALL = "pip install causal-conv1d --no-build-isolation"
BACKENDS = ("auto", "cuda", "ext", "torch")
ACTIVATIONS = (None, "silu", "swish")


def _causal_conv1d_cuda() -> Optional[Callable]:
    """The causal-conv1d package's `causal_conv1d_fn`, or None when it cannot be imported."""
    return _ext.optional_attr("causal_conv1d", "causal_conv1d_fn")


def ext_has_conv() -> bool:
    """True when `libs._C` is built with the CPU causal conv1d."""
    return _ext.ext_has("causal_conv1d_fwd")


def conv_backends() -> dict:
    """The backend that backend="auto" would run, per device: {"cpu": ..., "cuda": ...}."""
    return {
        "cpu": "ext" if ext_has_conv() else "torch",
        "cuda": "cuda" if _causal_conv1d_cuda() is not None else "torch",
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


def _pick_backend(backend: str, x: Tensor, weight: Tensor) -> str:
    """Resolve "auto" by device and capability; raise when an explicit backend cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"causal_conv1d: unknown backend {backend!r}, expected one of {BACKENDS}")
    if backend == "cuda":
        if not x.is_cuda:
            raise ValueError(f"causal_conv1d: backend 'cuda' needs CUDA tensors, got {x.device.type} "
                             "tensors; use backend='auto' (it picks 'ext' or 'torch' on CPU)")
        if _causal_conv1d_cuda() is None:
            raise RuntimeError(
                f"causal_conv1d: the causal-conv1d kernel is missing. {CAUSAL_CONV1D_INSTALL}"
            )
    if backend == "ext":
        if not ext_has_conv():
            raise RuntimeError(
                f"causal_conv1d: libs._C has no CPU causal conv1d. Build it: {EXT_BUILD}"
            )
        if not _ext_fits(x, weight):
            raise ValueError("causal_conv1d: backend 'ext' needs CPU tensors x [B, D, L] and "
                             f"weight [D, W], got x {tuple(x.shape)} on {x.device.type}, weight "
                             f"{tuple(weight.shape)} on {weight.device.type}; use backend='torch'")
    if backend != "auto":
        return backend
    if not x.is_cuda:
        return "ext" if ext_has_conv() and _ext_fits(x, weight) else "torch"
    if _causal_conv1d_cuda() is not None:
        return "cuda"
    log_once("causal_conv1d", "torch-on-cuda",
             f"causal-conv1d is not importable; {CAUSAL_CONV1D_INSTALL}", logging.WARNING)
    return "torch"


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    activation: Optional[str] = None,
    backend: str = "auto",
) -> Tensor:
    """Causal depthwise conv1d with causal-conv1d's `causal_conv1d_fn` contract.

    Args:
        x: [B, D, L]. weight: [D, W]. bias: [D] or None. activation: None | "silu" | "swish".
        backend: "auto" | "cuda" | "ext" | "torch" (explicit choices are the test hook).
    Returns:
        [B, D, L] in x's dtype.
    """
    _check_activation(activation)
    name = _pick_backend(backend, x, weight)
    log_once("causal_conv1d", name)
    if name == "cuda":
        return _causal_conv1d_cuda()(x, weight, bias, activation=activation)
    if name == "ext":
        return _CausalConv1dExt.apply(x, weight, bias, activation is not None)
    return causal_conv1d_ref(x, weight, bias, activation)
