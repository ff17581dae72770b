"""Selective scan (Mamba's S6 recurrence) with one dispatcher over three backends.

Contract: mamba-ssm's `selective_scan_fn` (reference-spec §5.5). Per batch b, channel d, state n:

    dt_t = softplus(delta_t + delta_bias_d)            (without softplus: delta_t + delta_bias_d)
    h_t  = exp(dt_t A[d, n]) h_{t-1} + dt_t B_t[n] u_t,   h_{-1} = 0
    y_t  = sum_n C_t[n] h_t[n] + D_d u_t,                out_t = y_t silu(z_t)

Backends:
- "cuda": mamba-ssm's CUDA kernel (`selective_scan_fn` over the compiled `selective_scan_cuda`).
- "triton": the Triton kernel of libs/ops/scan_triton.py (no compilation at install time).
- "ext": the C++ CPU kernel `libs._C.selective_scan_fwd/bwd` (csrc/selective_scan_cpu.cpp),
  with its hand-written backward; float32 / float64 compute, bf16 / fp16 inputs upcast.
- "torch": `selective_scan_ref`, the readable spec; linear-time backward.
"auto": on CUDA tensors mamba-ssm's kernel if it really works here (compiled symbol present,
first tiny call matches the reference, inputs inside its limits: libs/ops/_gpu.py), else Triton
likewise, else torch (warned once); on CPU ext when built, else torch. The process default can
be forced with `set_default_backend` or the environment variable LIBS_SCAN_BACKEND.
"""
import logging
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from libs.ops import _ext, _gpu
from libs.ops._ext import DefaultBackend, log_once, note_once


EXT_BUILD = _ext.BUILD_CMD
BACKENDS = ("auto", "cuda", "triton", "ext", "torch")
ENV_BACKEND = "LIBS_SCAN_BACKEND"
SELF_TEST_TOL = 1e-3  # relative, float32 kernels on a 16-step problem

ScanOutput = Union[Tensor, Tuple[Tensor, Tensor]]
_default = DefaultBackend("selective_scan", ENV_BACKEND, BACKENDS)


def set_default_backend(name: Optional[str]) -> None:
    """Force the backend of every `selective_scan(backend=None)` call (None: back to the
    environment variable LIBS_SCAN_BACKEND, else "auto")."""
    _default.set(name)


def default_backend() -> str:
    """The backend of `selective_scan(backend=None)`: set_default_backend, else LIBS_SCAN_BACKEND."""
    return _default.get()


def ext_has_scan() -> bool:
    """True when `libs._C` is built with the CPU selective scan."""
    return _ext.ext_has("selective_scan_fwd")


def installed_gpu_backends() -> Iterator[str]:
    """The GPU backends whose probe passes here, lazily, in "auto"'s order ("cuda", "triton");
    their first-call self-test is not run."""
    return (name for name, (probe, *_) in _GPU.items() if _gpu.probe(probe)[0] is not None)


def scan_backends() -> dict:
    """The backend that backend="auto" would run, per device: {"cpu": ..., "cuda": ...}
    (for CUDA: the first backend whose probe passes; the first-call self-test is not run here)."""
    cuda = next(installed_gpu_backends(), "torch")
    return {"cpu": "ext" if ext_has_scan() else "torch", "cuda": cuda}


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


def _grouped(x: Tensor) -> Tensor:
    """Variable B or C as [B, G, N, L]: [B, N, L] gets a group dim (a view); any strides."""
    return x.unsqueeze(1) if x.dim() == 3 else x


def _ext_args(u, delta, A, B, C, D, z, delta_bias) -> tuple:
    """The kernel's arguments: one compute dtype, rows contiguous along L, B/C as [B, G, N, L]."""
    cdt = _compute_dtype(u)
    return (_row_major(u, cdt), _row_major(delta, cdt), A.to(cdt), _grouped(B).to(cdt),
            _grouped(C).to(cdt), _to(D, cdt), _row_major(z, cdt), _to(delta_bias, cdt))


def backward_possible(tensors: tuple) -> bool:
    """Whether a backward can follow a call on `tensors`: grad mode is on and one of them
    requires grad. (ctx.needs_input_grad ignores no_grad, so it cannot tell inside a forward.)"""
    return torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in tensors)


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
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                save):
        args = _ext_args(u, delta, A, B, C, D, z, delta_bias)
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
        return tuple(_cast_like(g, x) for g, x in zip(ordered, inputs)) + (None, None, None)


def _on_gpu(x: Tensor) -> bool:
    """Whether x is on a device the GPU kernels serve (the seam tests use to run fakes on CPU)."""
    return x.is_cuda


def _rows(x: Optional[Tensor]) -> Optional[Tensor]:
    """x with stride 1 along its last dim (what every GPU kernel reads); None stays None."""
    return x if x is None or x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def _kernel_args(u, delta, A, B, C, D, z, delta_bias) -> tuple:
    """What mamba-ssm's kernel takes: stride 1 along L; D and delta_bias float32 (they are [D]
    vectors, so a half copy is cast); dtypes are otherwise left alone (see _gpu.scan_unfit)."""
    f32 = torch.float32
    return (_rows(u), _rows(delta), A.contiguous(), _rows(B), _rows(C), _to(D, f32), _rows(z),
            _to(delta_bias, f32))


def _run_mamba(fn: Callable, u, delta, A, B, C, D, z, delta_bias, softplus, last) -> ScanOutput:
    u, delta, A, B, C, D, z, delta_bias = _kernel_args(u, delta, A, B, C, D, z, delta_bias)
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=softplus,
              return_last_state=last)


def _run_triton(fn: Callable, u, delta, A, B, C, D, z, delta_bias, softplus, last) -> ScanOutput:
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=softplus,
              return_last_state=last)


def _triton_unfit(u, delta, A, B, C, D, z, delta_bias) -> Optional[str]:
    """Inputs the Triton backend is not asked to take (it computes in float32)."""
    if u.dtype == torch.float64:
        return "float64 inputs; the Triton scan computes in float32"
    if B.dim() == 2 or C.dim() == 2:
        return "time-invariant B/C [D, N]"
    return None


# name -> (probe name, limits check, runner, install fix)
_GPU = {
    "cuda": ("mamba_ssm", _gpu.scan_unfit, _run_mamba, _gpu.MAMBA_FIX),
    "triton": ("triton", _triton_unfit, _run_triton, _gpu.TRITON_FIX),
}


def _tiny_scan(name: str, device: torch.device) -> float:
    """Forward + backward of `name` on a 16-step problem on `device`; the max relative error of
    the output and the gradients against the float64 CPU reference."""
    g = torch.Generator().manual_seed(0)
    shapes = dict(u=(1, 4, 16), delta=(1, 4, 16), A=(4, 4), B=(1, 4, 16), C=(1, 4, 16), D=(4,),
                  z=(1, 4, 16), delta_bias=(4,))
    base = {k: torch.randn(s, generator=g) * 0.5 for k, s in shapes.items()}
    base["A"] = -base["A"].abs() - 0.1
    probe, _, run, _ = _GPU[name]
    return _gpu.fwd_bwd_error(lambda **x: run(_gpu.probe(probe)[0], *x.values(), True, False),
                              lambda **x: selective_scan_ref(**x, delta_softplus=True),
                              base, device)


def _check_explicit(backend: str, args: tuple) -> None:
    """Raise, with the reason and the fix, when an explicitly requested backend can't run."""
    u, B, C = args[0], args[3], args[4]
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}, expected one of {BACKENDS}")
    if backend == "cuda" and not _on_gpu(u):
        raise ValueError(f"selective_scan: backend 'cuda' needs CUDA tensors, got {u.device.type} "
                         "tensors; use backend='auto' (it picks 'ext' or 'torch' on CPU)")
    if backend in _GPU:
        probe, unfit, _, fix = _GPU[backend]
        fn, why = _gpu.probe(probe)
        if fn is None:
            raise RuntimeError(f"selective_scan: backend {backend!r} is unavailable: {why}. {fix}")
        reason = unfit(*args)
        if reason is not None:
            raise ValueError(f"selective_scan: backend {backend!r} cannot take these inputs: "
                             f"{reason}; use backend='auto'")
    if backend == "ext":
        if not ext_has_scan():
            raise RuntimeError(f"selective_scan: libs._C has no CPU scan. Build it: {EXT_BUILD}")
        if u.device.type != "cpu" or B.dim() == 2 or C.dim() == 2:
            raise ValueError("selective_scan: backend 'ext' needs CPU tensors and variable "
                             "B/C ([B, N, L] or [B, G, N, L]); use backend='torch'")


def _auto_gpu(args: tuple) -> str:
    """The first GPU backend that is installed, works on this device and takes these inputs."""
    device, why_not = args[0].device, []
    for name, (probe, unfit, _, fix) in _GPU.items():
        fn, why = _gpu.probe(probe)
        if fn is None:
            why_not.append(why)
            continue
        reason = unfit(*args)
        if reason is not None:
            note_once("selective_scan", f"{name}-unfit:{reason}",
                      f"backend '{name}' cannot take these inputs ({reason}); falling back")
            continue
        if _gpu.self_test(f"selective_scan[{name}]", device, lambda: _tiny_scan(name, device),
                          SELF_TEST_TOL, fix, "the next backend (triton, then torch)"):
            return name
        why_not.append(f"'{name}' failed its self-test")
    note_once("selective_scan", "torch-on-cuda",
              "no GPU scan kernel usable (" + "; ".join(why_not) + "); using the slow PyTorch "
              "loop. Fix: " + _gpu.MAMBA_FIX, logging.WARNING)
    return "torch"


def _auto_backend(args: tuple) -> str:
    """A GPU kernel for CUDA tensors, else the C++ kernel on CPU, else the reference."""
    u, B, C = args[0], args[3], args[4]
    if _on_gpu(u):
        return _auto_gpu(args)
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
    backend: Optional[str] = None,
) -> ScanOutput:
    """Selective scan with mamba-ssm's `selective_scan_fn` contract (see `selective_scan_ref`).

    Args:
        u, delta, z: [B, D, L]. A: [D, N] (float32). B, C: [B, N, L] or [B, G, N, L], or
        [D, N] (time-invariant: torch / cuda only). D, delta_bias: [D].
        backend: "auto" | "cuda" | "triton" | "ext" | "torch"; None: `default_backend()`.
            An explicit backend raises (with the fix) when it cannot run these inputs.
    Returns:
        out [B, D, L] in u's dtype, or (out, last_state [B, D, N]) with return_last_state.
        The gradient of last_state is not propagated by the "cuda" backend (as mamba-ssm).
    """
    backend = default_backend() if backend is None else backend
    args = (u, delta, A, B, C, D, z, delta_bias)
    _check_explicit(backend, args)
    name = _auto_backend(args) if backend == "auto" else backend
    log_once("selective_scan", name)
    if name in _GPU:
        probe, _, run, _ = _GPU[name]
        return run(_gpu.probe(probe)[0], *args, delta_softplus, return_last_state)
    if name == "ext":
        return _SelectiveScanExt.apply(*args, delta_softplus, return_last_state,
                                       backward_possible(args))
    return selective_scan_ref(*args, delta_softplus, return_last_state)
