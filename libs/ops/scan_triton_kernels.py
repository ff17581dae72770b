"""Triton kernels of the selective scan (forward and backward) and their launchers.

Imported only through `libs.ops.scan_triton._kernels()`, never at `import libs` time: triton is
optional, and `triton.jit` reads TRITON_INTERPRET when a kernel is *defined*, so this module is
re-imported when that variable changes (`INTERPRETED` records the mode it was built in).

Decomposition (the one of mamba-ssm's CUDA kernel): one program per (batch b, channel d) row.
The row walks L in chunks of CH steps; inside a chunk the recurrence h_t = a_t h_{t-1} + x_t is
a `tl.associative_scan` over an [NP, CH] tile (NP = N padded to a power of two), and the state
h [NP] is carried between chunks in registers. The forward writes the state entering every
chunk ([B, D, n_chunks, NP] fp32, i.e. 1/CH of a per-step history); the backward walks the
chunks in reverse, recomputes the chunk's states from that checkpoint, and runs the adjoint
recurrence g_t = a_{t+1} g_{t+1} + C_t dy_t as a reverse associative scan, carrying g between
chunks. dB and dC are summed over the channels of a group with fp32 atomics (as mamba-ssm does);
dA, dD and d(delta_bias) are written per (b, d) and summed over b by the caller.
Padded steps (t >= L) get dt = 0, so a = exp(0) = 1 and x = 0: the carry passes through them.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from libs.ops.scan_triton import interpreter_on

INTERPRETED = interpreter_on()  # read as triton.jit reads it (triton.knobs is triton >= 3.4 only)

# Chunk length and warps, chosen without a GPU from what ptxas reports for sm_90 (no spills;
# fwd 114 and bwd 128 registers per thread, i.e. 4 and 2 resident programs per SM), not from
# timings. CH must be a power of two; the same CH serves forward and backward, since the
# backward reads the forward's per-chunk checkpoints.
CHUNK = 64
FWD_WARPS = 4
BWD_WARPS = 8


@triton.jit
def _combine(a1, b1, a2, b2):
    """Compose two affine steps h -> a h + b: first (a1, b1), then (a2, b2)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _sum(x, axis: tl.constexpr):
    """tl.sum(x, axis) for fp32 x, by the same reduction. tl.sum and tl.zeros are themselves
    @triton.jit functions, fixed as compiled or interpreted when triton is first imported, so
    they fail under TRITON_INTERPRET=1 if triton was imported before it was set; tl.reduce
    and tl.full are builtins, patched by the interpreter whatever the import order."""
    return tl.reduce(x, axis, tl.standard._sum_combine)


@triton.jit
def _softplus(x):
    """softplus with torch's threshold 20; log1p(e) computed accurately for tiny e."""
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0))
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + log1p)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _load_dt(row_ptr, t, tmask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt [CH] = softplus(delta + bias) (or delta + bias), 0 at t >= L; and d dt / d delta."""
    raw = tl.load(row_ptr + t, mask=tmask, other=0.0).to(tl.float32)  # [CH]
    if HAS_BIAS:
        raw = raw + bias
    if SOFTPLUS:
        dt = _softplus(raw)
        slope = tl.where(raw > 20.0, 1.0, _sigmoid(raw))
    else:
        dt = raw
        slope = tl.full(raw.shape, 1.0, tl.float32)
    return tl.where(tmask, dt, 0.0), slope


@triton.jit
def _load_bc(base, s_n, s_l, n, t, mask):
    """One group's B or C over the chunk as an fp32 [NP, CH] tile (0 outside the mask)."""
    offs = n[:, None].to(tl.int64) * s_n + t[None, :].to(tl.int64) * s_l
    return tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _chunk_states(u, dt, A, Bt, h0):
    """States h_t [NP, CH] of one chunk from the state h0 [NP] entering it; also a and x."""
    decay = tl.exp(dt[None, :] * A[:, None])  # [NP, CH]
    drive = (dt * u)[None, :] * Bt  # [NP, CH]
    cum_a, cum_x = tl.associative_scan((decay, drive), 1, _combine)
    return cum_a * h0[:, None] + cum_x, drive


@triton.jit
def _row_params(A_ptr, D_ptr, bias_ptr, pid_d, n, nmask, dstate,
                HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """A[d] [NP] (0 on padded lanes: they decay by 1 and stay 0), D[d] and delta_bias[d]."""
    A = tl.load(A_ptr + pid_d * dstate + n, mask=nmask, other=0.0).to(tl.float32)  # [NP]
    d_skip = 0.0
    bias = 0.0
    if HAS_D:
        d_skip = tl.load(D_ptr + pid_d).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + pid_d).to(tl.float32)
    return A, d_skip, bias


@triton.jit
def _scan_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                     out_ptr, last_ptr, ckpt_ptr,
                     su_b, su_d, sdt_b, sdt_d, sz_b, sz_d,
                     sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
                     dim, length, dstate, dim_per_group, n_chunks,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, SAVE: tl.constexpr,
                     NP: tl.constexpr, CH: tl.constexpr):
    """out [B, D, L] and last state [B, D, N]; with SAVE, the state entering every chunk."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    grp = pid_d // dim_per_group
    n = tl.arange(0, NP)
    nmask = n < dstate
    cols = tl.arange(0, CH)
    A, d_skip, bias = _row_params(A_ptr, D_ptr, bias_ptr, pid_d, n, nmask, dstate, HAS_D, HAS_BIAS)
    row = pid_b * dim + pid_d  # row of the contiguous out / last / ckpt
    u_row = u_ptr + pid_b * su_b + pid_d * su_d
    dt_row = dt_ptr + pid_b * sdt_b + pid_d * sdt_d
    z_row = z_ptr + pid_b * sz_b + pid_d * sz_d
    b_base = B_ptr + pid_b * sb_b + grp * sb_g
    c_base = C_ptr + pid_b * sc_b + grp * sc_g
    h = tl.full([NP], 0.0, tl.float32)
    for c in range(0, n_chunks):
        t = c * CH + cols  # [CH]
        tmask = t < length
        if SAVE:
            tl.store(ckpt_ptr + (row * n_chunks + c) * NP + n, h)
        u = tl.load(u_row + t, mask=tmask, other=0.0).to(tl.float32)  # [CH]
        dt, _ = _load_dt(dt_row, t, tmask, bias, HAS_BIAS, SOFTPLUS)
        bc_mask = nmask[:, None] & tmask[None, :]
        Bt = _load_bc(b_base, sb_n, sb_l, n, t, bc_mask)  # [NP, CH]
        Ct = _load_bc(c_base, sc_n, sc_l, n, t, bc_mask)  # [NP, CH]
        hs, _ = _chunk_states(u, dt, A, Bt, h)  # [NP, CH]
        y = _sum(hs * Ct, 0) + d_skip * u  # [CH]
        if HAS_Z:
            z = tl.load(z_row + t, mask=tmask, other=0.0).to(tl.float32)
            y = y * z * _sigmoid(z)
        tl.store(out_ptr + row * length + t, y, mask=tmask)
        h = _sum(tl.where(cols[None, :] == CH - 1, hs, 0.0), 1)  # [NP] state after the chunk
    tl.store(last_ptr + row * dstate + n, h, mask=nmask)


@triton.jit
def _bwd_chunk(c, g, acc_a, acc_d, acc_b, u_row, dt_row, z_row, do_row, b_base, c_base,
               ckpt_row, grad_row, dbc_row, du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr,
               A, d_skip, bias, n, nmask, cols, sb_n, sb_l, sc_n, sc_l, length,
               HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
               NP: tl.constexpr, CH: tl.constexpr):
    """Gradients of chunk c; g [NP] is dL/dh at the first step after the chunk (on entry) and
    at the chunk's first step (on return). acc_*: running sums for dA [NP], dD and dbias [CH]."""
    t = c * CH + cols  # [CH]
    tmask = t < length
    bc_mask = nmask[:, None] & tmask[None, :]
    u = tl.load(u_row + t, mask=tmask, other=0.0).to(tl.float32)  # [CH]
    dt, slope = _load_dt(dt_row, t, tmask, bias, HAS_BIAS, SOFTPLUS)
    Bt = _load_bc(b_base, sb_n, sb_l, n, t, bc_mask)  # [NP, CH]
    Ct = _load_bc(c_base, sc_n, sc_l, n, t, bc_mask)  # [NP, CH]
    h0 = tl.load(ckpt_row + c * NP + n)  # [NP] state entering the chunk (forward checkpoint)
    hs, drive = _chunk_states(u, dt, A, Bt, h0)  # [NP, CH]
    dy = tl.load(do_row + t, mask=tmask, other=0.0).to(tl.float32)  # [CH] dL/dout
    if HAS_Z:
        z = tl.load(z_row + t, mask=tmask, other=0.0).to(tl.float32)
        sig = _sigmoid(z)
        y = _sum(hs * Ct, 0) + d_skip * u  # [CH] output before the gate
        tl.store(dz_ptr + grad_row + t, dy * y * sig * (1.0 + z * (1.0 - sig)), mask=tmask)
        dy = dy * z * sig  # dL/dy
    # adjoint recurrence g_t = a_{t+1} g_{t+1} + C_t dy_t: a_{t+1} needs dt one step ahead
    # (a = 1 past the end, where g_{L-1} receives dL/dlast_state through the carry)
    dt_next, _ = _load_dt(dt_row, t + 1, t + 1 < length, bias, HAS_BIAS, SOFTPLUS)
    decay_next = tl.exp(dt_next[None, :] * A[:, None])  # [NP, CH]
    cum_a, cum_g = tl.associative_scan((decay_next, Ct * dy[None, :]), 1, _combine, reverse=True)
    gs = cum_g + cum_a * g[:, None]  # [NP, CH] dL/dh_t
    g = _sum(tl.where(cols[None, :] == 0, gs, 0.0), 1)  # [NP]
    decayed = hs - drive  # [NP, CH] a_t h_{t-1}
    gb = _sum(gs * Bt, 0)  # [CH]
    tl.store(du_ptr + grad_row + t, dy * d_skip + dt * gb, mask=tmask)
    d_dt = gb * u + _sum(gs * decayed * A[:, None], 0)  # [CH] dL/d dt
    d_delta = tl.where(tmask, d_dt * slope, 0.0)  # [CH]
    tl.store(ddt_ptr + grad_row + t, d_delta, mask=tmask)
    acc_a += _sum(gs * decayed * dt[None, :], 1)  # [NP]
    acc_d += dy * u
    acc_b += d_delta
    dbc = dbc_row + n[:, None] * length + t[None, :]  # [NP, CH] into fp32 [B, G, N, L]
    tl.atomic_add(dB_ptr + dbc, gs * (dt * u)[None, :], mask=bc_mask)
    tl.atomic_add(dC_ptr + dbc, hs * dy[None, :], mask=bc_mask)
    return g, acc_a, acc_d, acc_b


@triton.jit
def _scan_bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                     dout_ptr, dlast_ptr, ckpt_ptr,
                     du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
                     su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sdo_b, sdo_d,
                     sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
                     dim, length, dstate, dim_per_group, n_groups, n_chunks,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr,
                     NP: tl.constexpr, CH: tl.constexpr):
    """Every input gradient of one (b, d) row, walking the chunks from last to first."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    grp = pid_d // dim_per_group
    n = tl.arange(0, NP)
    nmask = n < dstate
    cols = tl.arange(0, CH)
    A, d_skip, bias = _row_params(A_ptr, D_ptr, bias_ptr, pid_d, n, nmask, dstate, HAS_D, HAS_BIAS)
    row = pid_b * dim + pid_d
    if HAS_DLAST:
        g = tl.load(dlast_ptr + row * dstate + n, mask=nmask, other=0.0).to(tl.float32)
    else:
        g = tl.full([NP], 0.0, tl.float32)
    acc_a = tl.full([NP], 0.0, tl.float32)
    acc_d = tl.full([CH], 0.0, tl.float32)
    acc_b = tl.full([CH], 0.0, tl.float32)
    for i in range(0, n_chunks):
        g, acc_a, acc_d, acc_b = _bwd_chunk(
            n_chunks - 1 - i, g, acc_a, acc_d, acc_b,
            u_ptr + pid_b * su_b + pid_d * su_d, dt_ptr + pid_b * sdt_b + pid_d * sdt_d,
            z_ptr + pid_b * sz_b + pid_d * sz_d, dout_ptr + pid_b * sdo_b + pid_d * sdo_d,
            B_ptr + pid_b * sb_b + grp * sb_g, C_ptr + pid_b * sc_b + grp * sc_g,
            ckpt_ptr + row * n_chunks * NP, row * length,
            (pid_b * n_groups + grp) * dstate * length,
            du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, A, d_skip, bias, n, nmask, cols,
            sb_n, sb_l, sc_n, sc_l, length, HAS_Z, HAS_BIAS, SOFTPLUS, NP, CH)
    tl.store(dA_ptr + row * dstate + n, acc_a, mask=nmask)
    tl.store(dD_ptr + row, _sum(acc_d, 0))
    tl.store(dbias_ptr + row, _sum(acc_b, 0))


def tile_sizes(dstate: int, length: int) -> Tuple[int, int]:
    """(NP, CH): the state padded to a power of two, and the chunk length (short L, short CH)."""
    np_ = max(triton.next_power_of_2(dstate), 2)
    return np_, min(CHUNK, max(16, triton.next_power_of_2(length)))


def _bc_strides(x: Tensor) -> tuple:
    return tuple(x.stride())  # [B, G, N, L]: batch, group, state, time


def scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
             z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool,
             save: bool) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Launch the forward kernel.

    Args: u, delta, z [B, D, L] with unit stride along L; A [D, N]; B, C [B, G, N, L] (any
    strides); D, delta_bias [D] contiguous. Any float dtypes: the kernel computes in fp32.
    Returns out [B, D, L] (u's dtype), last_state [B, D, N] fp32 and, with `save`, the
    per-chunk checkpoints [B, D, n_chunks, NP] fp32 that `scan_bwd` needs.
    """
    batch, dim, length = u.shape
    groups, dstate = B.shape[1], B.shape[2]
    np_, ch = tile_sizes(dstate, length)
    n_chunks = triton.cdiv(length, ch)
    out = torch.empty(batch, dim, length, dtype=u.dtype, device=u.device)  # [B, D, L]
    last = torch.zeros(batch, dim, dstate, dtype=torch.float32, device=u.device)  # [B, D, N]
    ckpt = (torch.empty(batch, dim, n_chunks, np_, dtype=torch.float32, device=u.device)
            if save else last)  # [B, D, n_chunks, NP] (or an unused placeholder)
    z_ = u if z is None else z
    if batch * dim == 0:  # nothing to scan (an empty grid cannot launch)
        return out, last, (ckpt if save else None)
    _scan_fwd_kernel[(batch, dim)](
        u, delta, A, B, C, u if D is None else D, z_, u if delta_bias is None else delta_bias,
        out, last, ckpt,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), z_.stride(0), z_.stride(1),
        *_bc_strides(B), *_bc_strides(C), dim, length, dstate, dim // groups, n_chunks,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus, SAVE=save, NP=np_, CH=ch, num_warps=FWD_WARPS)
    return out, last, (ckpt if save else None)


def scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
             z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool, ckpt: Tensor,
             dout: Tensor, dlast: Optional[Tensor]) -> tuple:
    """Launch the backward kernel (arguments as `scan_fwd`, plus its checkpoints, dL/dout
    [B, D, L] with unit stride along L, and dL/dlast_state [B, D, N] or None).

    Returns (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias): du, ddelta, dz [B, D, L] in their
    input's dtype; dA [D, N], dB, dC [B, G, N, L], dD, ddelta_bias [D] in fp32; None where the
    input is None.
    """
    batch, dim, length = u.shape
    groups, dstate = B.shape[1], B.shape[2]
    np_, ch = tile_sizes(dstate, length)
    dev, f32 = u.device, torch.float32
    du = torch.empty(batch, dim, length, dtype=u.dtype, device=dev)  # [B, D, L]
    ddelta = torch.empty(batch, dim, length, dtype=delta.dtype, device=dev)  # [B, D, L]
    dz = None if z is None else torch.empty(batch, dim, length, dtype=z.dtype, device=dev)
    dB = torch.zeros(batch, groups, dstate, length, dtype=f32, device=dev)  # [B, G, N, L]
    dC = torch.zeros(batch, groups, dstate, length, dtype=f32, device=dev)  # [B, G, N, L]
    dA = torch.zeros(batch, dim, dstate, dtype=f32, device=dev)  # [B, D, N] per-batch parts
    dD = torch.zeros(batch, dim, dtype=f32, device=dev)  # [B, D]
    dbias = torch.zeros(batch, dim, dtype=f32, device=dev)  # [B, D]
    z_ = u if z is None else z
    if batch * dim:  # an empty grid cannot launch; the gradients are then empty or zero
        _scan_bwd_kernel[(batch, dim)](
            u, delta, A, B, C, u if D is None else D, z_, u if delta_bias is None else delta_bias,
            dout, u if dlast is None else dlast, ckpt,
            du, ddelta, du if dz is None else dz, dB, dC, dA, dD, dbias,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), z_.stride(0), z_.stride(1),
            dout.stride(0), dout.stride(1), *_bc_strides(B), *_bc_strides(C),
            dim, length, dstate, dim // groups, groups, ckpt.shape[2],
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=softplus, HAS_DLAST=dlast is not None, NP=np_, CH=ch, num_warps=BWD_WARPS)
    return (du, ddelta, dA.sum(0), dB, dC, None if D is None else dD.sum(0), dz,
            None if delta_bias is None else dbias.sum(0))

