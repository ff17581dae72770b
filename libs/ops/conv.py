"""Causal depthwise conv1d (Mamba's short convolution) with one dispatcher.

Contract: the `causal_conv1d` package's `causal_conv1d_fn(x, weight, bias, activation)`:
each channel d is convolved with its own kernel weight[d] of width W over the past W-1 steps
(zero left padding), so out[:, :, t] depends on x[:, :, t-W+1 .. t] only; output length L.

Backends: "cuda" (the causal-conv1d kernel, imported lazily for CUDA tensors) and "torch"
(`causal_conv1d_ref`: F.conv1d with groups=D, truncated), which is what runs on CPU. At
B=2, D=512, L=2304, W=4 it takes a few ms forward and ~10 ms forward + backward on 2 cores,
about as much as the C++ scan; a C++ kernel (memory-bound, ~1 ms) is a possible follow-up.
"""
import functools
import logging
from typing import Callable, Optional

import torch.nn.functional as F
from torch import Tensor

from libs.ops.scan import log_once

logger = logging.getLogger(__name__)

CAUSAL_CONV1D_INSTALL = "pip install causal-conv1d --no-build-isolation"
BACKENDS = ("auto", "cuda", "torch")
ACTIVATIONS = (None, "silu", "swish")


@functools.lru_cache(maxsize=None)
def _causal_conv1d_cuda() -> Optional[Callable]:
    """The causal-conv1d package's `causal_conv1d_fn`, or None when it cannot be imported."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception as exc:  # ImportError, or OSError/RuntimeError of a broken CUDA build
        logger.debug("causal-conv1d is not importable: %s", exc)
        return None
    return causal_conv1d_fn


def conv_backends() -> dict:
    """The backend that backend="auto" would run, per device: {"cpu": ..., "cuda": ...}."""
    return {"cpu": "torch", "cuda": "cuda" if _causal_conv1d_cuda() is not None else "torch"}


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


def _pick_backend(backend: str, x: Tensor) -> str:
    """Resolve "auto" by device and capability; raise when an explicit backend cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"causal_conv1d: unknown backend {backend!r}, expected one of {BACKENDS}")
    if backend == "cuda":
        if not x.is_cuda:
            raise ValueError("causal_conv1d: backend 'cuda' needs CUDA tensors")
        if _causal_conv1d_cuda() is None:
            raise RuntimeError(
                f"causal_conv1d: the causal-conv1d kernel is missing. {CAUSAL_CONV1D_INSTALL}"
            )
    if backend != "auto":
        return backend
    if not x.is_cuda:
        return "torch"
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
        backend: "auto" | "cuda" | "torch" (explicit choices are the test hook).
    Returns:
        [B, D, L] in x's dtype.
    """
    _check_activation(activation)
    name = _pick_backend(backend, x)
    log_once("causal_conv1d", name)
    if name == "cuda":
        return _causal_conv1d_cuda()(x, weight, bias, activation=activation)
    return causal_conv1d_ref(x, weight, bias, activation)
