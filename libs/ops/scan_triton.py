"""Selective scan written in Triton: the Mamba fast path on a GPU without compiling mamba-ssm.

`selective_scan_triton` has mamba-ssm's `selective_scan_fn` contract (see
`libs.ops.scan.selective_scan_ref`, the spec). Forward and backward are Triton kernels
(libs/ops/scan_triton_kernels.py), chunked over L with the state carried between chunks; the
backward recomputes each chunk's states from per-chunk checkpoints, so it saves the inputs plus
[B, D, ceil(L / CH), N] states, never a [B, D, N, L] history. Compute is fp32 for fp32, bf16 and
fp16 inputs (fp64 inputs are computed in fp32 too).

Triton is optional: nothing here imports it before a scan runs, so `import libs` works without
it. The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter
(TRITON_INTERPRET=1, slow: for tests).
"""
import importlib
import os
from types import ModuleType
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from libs.ops.scan import ScanOutput, _cast_like, _grouped, _rows, backward_possible

TRITON_INSTALL = ("pip install triton==3.7.1 (CUDA builds of torch already ship a matching "
                  "triton)")
_KERNELS = "libs.ops.scan_triton_kernels"


def interpreter_on() -> bool:
    """TRITON_INTERPRET as triton itself reads it (set: "1", "true" or "on")."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")


def _import_error() -> Optional[str]:
    """None when triton imports, else why not."""
    try:
        importlib.import_module("triton")
    except Exception as exc:  # ImportError, or a broken install failing at import
        return f"{type(exc).__name__}: {exc}"
    return None


def triton_status(device: Optional[Union[torch.device, str]] = None) -> Tuple[bool, str]:
    """Whether the Triton scan can run, and why (not).

    Usable when triton imports and either the tensors are on CUDA or TRITON_INTERPRET=1 (the
    interpreter runs the kernels on CPU tensors). `device`: the tensors' device; None asks
    whether some device could run it (CUDA visible, or the interpreter on).
    """
    error = _import_error()
    if error is not None:
        return False, f"triton does not import ({error}); {TRITON_INSTALL}"
    if interpreter_on():
        return True, "triton interpreter (TRITON_INTERPRET=1): kernels run on CPU tensors, slowly"
    on_cuda = (torch.cuda.is_available() if device is None
               else torch.device(device).type == "cuda")
    if on_cuda:
        return True, "triton on CUDA"
    where = "no CUDA device is visible" if device is None else f"tensors are on {device}"
    return False, f"{where}: Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for tests)"


def _kernels() -> ModuleType:
    """The kernel module, (re)imported so that its kernels match TRITON_INTERPRET now:
    `triton.jit` picks interpreted or compiled kernels when a kernel is defined."""
    module = importlib.import_module(_KERNELS)
    if module.INTERPRETED != interpreter_on():
        module = importlib.reload(module)
    return module


def _kernel_args(u, delta, A, B, C, D, z, delta_bias) -> tuple:
    """The kernels' arguments: [B, D, L] rows with unit L stride, B/C as [B, G, N, L] views."""
    vec = (lambda v: None if v is None else v.contiguous())
    return (_rows(u), _rows(delta), A.contiguous(), _grouped(B), _grouped(C), vec(D), _rows(z),
            vec(delta_bias))


class _SelectiveScanTriton(torch.autograd.Function):
    """Triton forward and backward. Saves the inputs and the per-chunk states only."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                save):
        out, last, ckpt = _kernels().scan_fwd(*_kernel_args(u, delta, A, B, C, D, z, delta_bias),
                                              delta_softplus, save)
        ctx.delta_softplus = delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        return (out, last) if return_last_state else out

    @staticmethod
    def backward(ctx, dout, dlast=None):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        dlast = None if dlast is None else dlast.float().contiguous()  # [B, D, N]
        grads = _kernels().scan_bwd(*_kernel_args(u, delta, A, B, C, D, z, delta_bias),
                                    ctx.delta_softplus, ckpt, _rows(dout), dlast)
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        return tuple(_cast_like(g, x) for g, x in zip(grads, inputs)) + (None, None, None)


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    """Raise with what to do when the kernels cannot take these inputs."""
    usable, reason = triton_status(u.device)
    if not usable:
        raise RuntimeError(f"selective_scan_triton: {reason}")
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan_triton: u and delta must both be [B, D, L], got "
                         f"{tuple(u.shape)} and {tuple(delta.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan_triton: A must be [D={dim}, N], got {tuple(A.shape)}")
    for name, x in (("B", B), ("C", C)):
        if x.dim() not in (3, 4) or x.shape[0] != batch or x.shape[-1] != length \
                or x.shape[-2] != A.shape[1] or dim % (x.shape[1] if x.dim() == 4 else 1):
            raise ValueError(
                f"selective_scan_triton: {name} must be [B, N, L] or [B, G, N, L] with G dividing "
                f"D={dim} (B={batch}, N={A.shape[1]}, L={length}), got {tuple(x.shape)}; "
                "time-invariant [D, N] B/C run on backend='torch'")


def selective_scan_triton(
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
    """Selective scan with Triton kernels (mamba-ssm's `selective_scan_fn` contract).

    Args:
        u, delta: [B, D, L]. A: [D, N]. B, C: [B, N, L] or [B, G, N, L] (G divides D).
        D: [D] skip weight. z: [B, D, L] gate. delta_bias: [D] added to delta.
        delta_softplus: apply softplus (threshold 20) to delta + delta_bias.
        return_last_state: also return the final state.
    Returns:
        out [B, D, L] in u's dtype, and last_state [B, D, N] fp32 if requested. Gradients reach
        every tensor argument, in its own dtype.
    Raises:
        RuntimeError when triton is missing or the tensors are not on CUDA (without the
        interpreter); ValueError for shapes outside the contract.
    """
    _check_inputs(u, delta, A, B, C)
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    return _SelectiveScanTriton.apply(*tensors, delta_softplus, return_last_state,
                                      backward_possible(tensors))  # checkpoints only if so
