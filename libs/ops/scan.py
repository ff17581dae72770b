"""Selective scan (Mamba's S6 recurrence) with one dispatcher over three backends.

Contract: mamba-ssm's `selective_scan_fn` (reference-spec §5.5). Per batch b, channel d, state n:

    dt_t = softplus(delta_t + delta_bias_d)            (without softplus: delta_t + delta_bias_d)
    h_t  = exp(dt_t A[d, n]) h_{t-1} + dt_t B_t[n] u_t,   h_{-1} = 0
    y_t  = sum_n C_t[n] h_t[n] + D_d u_t,                out_t = y_t silu(z_t)

Backends:
- "cuda": mamba-ssm's CUDA kernel, imported lazily on the first CUDA call (mamba-ssm does not
  even import on a CPU-only machine).
- "ext": the C++ CPU kernel `libs._C.selective_scan_fwd/bwd` (csrc/selective_scan_cpu.cpp),
  with its hand-written backward; float32 / float64 compute, bf16 / fp16 inputs upcast.
- "torch": `selective_scan_ref`, the readable spec; linear-time backward.
"auto" picks cuda for CUDA tensors when importable, else ext on CPU when built, else torch.
"""
import logging
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from libs.ops import _ext
from libs.ops._ext import log_once


MAMBA_INSTALL = (
    "pip install causal-conv1d --no-build-isolation && "
    "MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation"
)
EXT_BUILD = "pip install -e . --no-build-isolation"
BACKENDS = ("auto", "cuda", "ext", "torch")

ScanOutput = Union[Tensor, Tuple[Tensor, Tensor]]
def _mamba_scan_fn() -> Optional[Callable]:
    """mamba-ssm's CUDA `selective_scan_fn`, or None when it cannot be imported."""
    return _ext.optional_attr("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")


def ext_has_scan() -> bool:
    """True when `libs._C` is built with the CPU selective scan."""
    return _ext.ext_has("selective_scan_fwd")


def scan_backends() -> dict:
    """The backend that backend="auto" would run, per device: {"cpu": ..., "cuda": ...}."""
    return {
        "cpu": "ext" if ext_has_scan() else "torch",
        "cuda": "cuda" if _mamba_scan_fn() is not None else "torch",
    }


def _compute_dtype(u: Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _bc_per_channel(x: Tensor, dim: int, length: int) -> Tensor:
    """B or C as a tensor broadcastable to [B, D, N, L].

    [B, N, L] -> [B, 1, N, L]; [B, G, N, L] -> [B, D, N, L] (group g serves channels
    g*D/G .. (g+1)*D/G - 1); [D, N] (time-invariant) -> [1, D, N, L] (expanded view).
    """
    if x.dim() == 2:
        return x[None, :, :, None].expand(1, dim, x.shape[1], length)  # [1, D, N, L]
    if x.dim() == 3:
        return x.unsqueeze(1)  # [B, 1, N, L]
    return x.repeat_interleave(dim // x.shape[1], dim=1)  # [B, D, N, L]


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> ScanOutput:
    """Pure-PyTorch selective scan: the spec of every backend.

    Args:
        u, delta: [B, D, L] input and time step.
        A: [D, N] real state matrix (diagonal per channel).
        B, C: [B, N, L], [B, G, N, L] (G divides D) or time-invariant [D, N].
        D: [D] skip weight. z: [B, D, L] gate. delta_bias: [D] added to delta.
        delta_softplus: apply softplus to delta + delta_bias (threshold 20, as torch/CUDA).
        return_last_state: also return the final state.
    Returns:
        out [B, D, L] in u's dtype, and last_state [B, D, N] (float32/64) if requested.
    Computes in float32 (float64 for float64 u). The time loop iterates over `unbind` slices:
    indexing `x[:, :, t]` instead would make the backward quadratic in L.
    """
    cdt, dtype_in = _compute_dtype(u), u.dtype
    batch, dim, length = u.shape
    u, delta, A = u.to(cdt), delta.to(cdt), A.to(cdt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(cdt)[:, None]  # [B, D, L]
    if delta_softplus:
        delta = F.softplus(delta)
    B = _bc_per_channel(B.to(cdt), dim, length)  # [B|1, D|1, N, L]
    C = _bc_per_channel(C.to(cdt), dim, length)  # [B|1, D|1, N, L]
    decay = torch.exp(delta[..., None] * A[:, None, :])  # [B, D, L, N]
    drive = (delta * u)[..., None] * B.transpose(-1, -2)  # [B, D, L, N]
    h = u.new_zeros(batch, dim, A.shape[1])  # [B, D, N]
    ys = []
    for decay_t, drive_t, c_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(-1)):
        h = decay_t * h + drive_t  # [B, D, N]
        ys.append((h * c_t).sum(-1))  # [B, D]
    out = torch.stack(ys, dim=2)  # [B, D, L]
    if D is not None:
        out = out + u * D.to(cdt)[:, None]
    if z is not None:
        out = out * F.silu(z.to(cdt))
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


def _to(x: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    return None if x is None else x.to(dtype)


def _row_major(x: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """x in `dtype` with stride 1 along L; other strides are kept (no whole-tensor copy)."""
    if x is None:
        return None
    x = x.to(dtype)
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def _ext_args(u, delta, A, B, C, D, z, delta_bias) -> tuple:
    """The kernel's arguments: one compute dtype, rows contiguous along L, B/C as [B, G, N, L]."""
    cdt = _compute_dtype(u)
    B4 = B.unsqueeze(1) if B.dim() == 3 else B  # [B, G, N, L], any strides
    C4 = C.unsqueeze(1) if C.dim() == 3 else C  # [B, G, N, L], any strides
    return (_row_major(u, cdt), _row_major(delta, cdt), A.to(cdt), B4.to(cdt), C4.to(cdt),
            _to(D, cdt), _row_major(z, cdt), _to(delta_bias, cdt))


def _cast_like(grad: Optional[Tensor], like: Optional[Tensor]) -> Optional[Tensor]:
    """The gradient in the dtype and shape of its input (None for absent inputs)."""
    if grad is None or like is None:
        return None
    return grad.to(like.dtype).view(like.shape)


class _SelectiveScanExt(torch.autograd.Function):
    """The C++ CPU kernel with its hand-written backward.

    The forward saves the inputs and the state every 64 steps ([B, D, ceil(L/64), N]); the
    backward recomputes the states per chunk, so working memory is O(B*D*N*L/64).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        args = _ext_args(u, delta, A, B, C, D, z, delta_bias)
        save = any(ctx.needs_input_grad)
        out, last, ckpt = _ext._C.selective_scan_fwd(*args, delta_softplus, save)
        ctx.delta_softplus = delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        out = out.to(u.dtype)  # [B, D, L]
        return (out, last) if return_last_state else out

    @staticmethod
    def backward(ctx, dout, dlast=None):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        args = _ext_args(u, delta, A, B, C, D, z, delta_bias)
        dout = _row_major(dout, args[0].dtype)
        grads = _ext._C.selective_scan_bwd(*args, ctx.delta_softplus, ckpt, dout, dlast)
        du, ddelta, dA, dB, dC, dD, dz, dbias = grads
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        ordered = (du, ddelta, dA, dB, dC, dD, dz, dbias)
        return tuple(_cast_like(g, x) for g, x in zip(ordered, inputs)) + (None, None)


def _check_explicit(backend: str, u: Tensor, B: Tensor, C: Tensor) -> None:
    """Raise, with the install / build command, when an explicitly requested backend can't run."""
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}, expected one of {BACKENDS}")
    if backend == "cuda":
        if not u.is_cuda:
            raise ValueError(f"selective_scan: backend 'cuda' needs CUDA tensors, got {u.device.type} "
                             "tensors; use backend='auto' (it picks 'ext' or 'torch' on CPU)")
        if _mamba_scan_fn() is None:
            raise RuntimeError(
                f"selective_scan: mamba-ssm's CUDA kernel is missing. {MAMBA_INSTALL}"
            )
    if backend == "ext":
        if not ext_has_scan():
            raise RuntimeError(f"selective_scan: libs._C has no CPU scan. Build it: {EXT_BUILD}")
        if u.device.type != "cpu" or B.dim() == 2 or C.dim() == 2:
            raise ValueError("selective_scan: backend 'ext' needs CPU tensors and variable "
                             "B/C ([B, N, L] or [B, G, N, L]); use backend='torch'")


def _auto_backend(u: Tensor, B: Tensor, C: Tensor) -> str:
    """mamba-ssm's kernel for CUDA tensors, else the C++ kernel on CPU, else the reference."""
    if u.is_cuda:
        if _mamba_scan_fn() is not None:
            return "cuda"
        log_once("selective_scan", "torch-on-cuda",
                 f"mamba-ssm is not importable, the PyTorch loop is slow; {MAMBA_INSTALL}",
                 logging.WARNING)
        return "torch"
    if ext_has_scan() and u.device.type == "cpu" and B.dim() > 2 and C.dim() > 2:
        return "ext"
    return "torch"


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
) -> ScanOutput:
    """Selective scan with mamba-ssm's `selective_scan_fn` contract (see `selective_scan_ref`).

    Args:
        u, delta, z: [B, D, L]. A: [D, N] (float32). B, C: [B, N, L] or [B, G, N, L] (the ext
        kernel), or [D, N] (torch / cuda only). D, delta_bias: [D].
        backend: "auto" | "cuda" | "ext" | "torch" (explicit choices are the test hook).
    Returns:
        out [B, D, L] in u's dtype, or (out, last_state [B, D, N]) with return_last_state.
    """
    _check_explicit(backend, u, B, C)
    name = _auto_backend(u, B, C) if backend == "auto" else backend
    log_once("selective_scan", name)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if name == "cuda":
        return _mamba_scan_fn()(*args)
    if name == "ext":
        return _SelectiveScanExt.apply(*args)
    return selective_scan_ref(*args)
