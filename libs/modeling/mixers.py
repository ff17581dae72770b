"""Bidirectional Mamba token mixers of video-mamba-suite: ViM ("bimamba v2") and DBM.

Both mixers map hidden states [B, L, d] to [B, L, d] and are built only from the `libs.ops`
primitives (`causal_conv1d`, `selective_scan`) and dense matmuls. Parameter names, shapes,
registration order and initialisation follow the published modules
(`mamba_ssm/modules/mamba_simple.py` with bimamba_type="v2", and `mamba_ssm/modules/mamba_new.py`),
so the published checkpoints load unchanged and the same seed draws the same initial weights.

Layout: internally everything runs channel-first, [B, channels, L], the layout the scan kernels
read. The input projection is computed as a batched `W_in @ h^T`, which yields [B, 2E, L] directly,
and the output projection as `W_out @ y`, which yields [B, d, L]; `forward` returns that as a transposed
[B, L, d] view, so a caller that wants channel-first back (the temporal blocks) gets it with a
free `.transpose(1, 2)`. x, z, B, C and the delta projection are channel slices of contiguous
tensors: their rows are contiguous in L, which the ops accept without a copy.

One direction (the fused `mamba_inner_fn_no_out_proj` of the reference, unfused here):
    u     = SiLU(causal depthwise conv(x))                      [B', E, L]
    x_dbl = W_x @ u  → (δ_low [R], B_t [N], C_t [N])            [B', R + 2N, L]
    δ     = W_dt @ δ_low                                        [B', E, L]
    y     = selective_scan(u, δ, A=-exp(A_log), B_t, C_t, D, z, delta_bias=b_dt, softplus)

Reversal: the backward direction reads the sequence in reverse. With `lengths=None` the whole
padded sequence is flipped (the published behaviour: the backward scan starts in the padding).
With `lengths` [B] only each sample's valid prefix [0, len) is reversed and the padded tail stays
at the end, so padding never reaches a valid step through the causal conv or the scan.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from libs.ops.conv import causal_conv1d
from libs.ops.scan import selective_scan

__all__ = ["BiMambaV2", "DecomposedBiMamba", "reverse_index", "reverse_time"]


# --------------------------------------------------------------------------------------------
# helpers


def reverse_index(lengths: Tensor, seq_len: int) -> Tensor:
    """Time index that reverses each sample's valid prefix and keeps its padded tail in place.

    Args:
        lengths: [B] int, number of valid (leading) steps per sample, 0 <= lengths <= seq_len.
        seq_len: L, the padded length.
    Returns:
        [B, L] int64 `idx` with idx[b, t] = lengths[b] - 1 - t for t < lengths[b], else t.
        The permutation is its own inverse.
    """
    t = torch.arange(seq_len, device=lengths.device)  # [L]
    lengths = lengths.to(torch.long)[:, None]  # [B, 1]
    return torch.where(t < lengths, lengths - 1 - t, t)  # [B, L]


def reverse_time(x: Tensor, idx: Optional[Tensor]) -> Tensor:
    """Reverse x [B, C, L] in time: a full flip when idx is None, else x[b, :, idx[b]]."""
    if idx is None:
        return x.flip(-1)
    return x.gather(-1, idx[:, None, :].expand(-1, x.shape[1], -1))  # [B, C, L]


def _init_dt_proj(dt_proj: nn.Linear, dt_rank: int, dt_min: float, dt_max: float,
                  dt_init_floor: float, dt_scale: float = 1.0) -> None:
    """Mamba's "random" dt init: weight ~ U(±dt_scale·R^-1/2), softplus(bias) log-uniform in
    [dt_min, dt_max] (floored at dt_init_floor).

    The bias is marked `_no_reinit` so that the backbone's bias zeroing skips it.
    """
    bound = dt_rank ** -0.5 * dt_scale
    nn.init.uniform_(dt_proj.weight, -bound, bound)
    d_inner = dt_proj.out_features
    log_dt = torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    dt = torch.exp(log_dt).clamp(min=dt_init_floor)  # [E]
    inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))  # softplus^-1(dt)
    with torch.no_grad():
        dt_proj.bias.copy_(inv_softplus_dt)
    dt_proj.bias._no_reinit = True


def _s4d_real_log(d_inner: int, d_state: int) -> nn.Parameter:
    """A_log[e, n] = log(n + 1), i.e. A = -[1, 2, ..., N] for every channel (fp32, no weight decay)."""
    a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # [E, N]
    p = nn.Parameter(torch.log(a))
    p._no_weight_decay = True
    return p


def _ones_skip(d_inner: int) -> nn.Parameter:
    """The D skip connection, ones (fp32, no weight decay)."""
    p = nn.Parameter(torch.ones(d_inner))
    p._no_weight_decay = True
    return p


def _depthwise_conv(d_inner: int, d_conv: int, conv_bias: bool) -> nn.Conv1d:
    """Depthwise conv with the reference's module layout ([E, 1, W] weight); applied causally."""
    return nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)


def _project(linear: nn.Linear, x: Tensor) -> Tensor:
    """Apply a Linear over the channel axis of a channel-first tensor: [B, in, L] -> [B, out, L].

    A bmm against the weight broadcast over the batch (stride 0) writes [B, out, L] directly;
    torch.matmul(W, x) would compute (x^T W^T)^T and then copy the transposed result
    (15-25 % of a whole block's forward + backward on CPU at L = 2304, d = 512).
    """
    y = torch.bmm(linear.weight.expand(x.shape[0], -1, -1), x)  # [B, out, L]
    if linear.bias is not None:
        y = y + linear.bias[:, None]
    return y


class _BiMambaBase(nn.Module):
    """Shared hyper-parameters and the single-direction SSM path."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int,
                 dt_rank: Union[int, str]):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        # from d_model, not d_inner (as published)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

    def _in_projection(self, h: Tensor) -> Tensor:
        """h [B, L, d] -> xz [B, rows, L] (W_in @ h^T: no transpose copy of the result)."""
        if h.dim() != 3 or h.shape[-1] != self.d_model:
            raise ValueError(
                f"{type(self).__name__}: expected hidden states [B, L, {self.d_model}], got {tuple(h.shape)}"
            )
        return _project(self.in_proj, h.transpose(1, 2))  # [B, rows, L]

    def _ssm(self, xz: Tensor, conv1d: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear,
             A_log: Tensor, D: Tensor) -> Tensor:
        """One direction on xz = [x | z] ([B', 2E, L]); returns the gated scan output [B', E, L]."""
        x, z = xz.chunk(2, dim=1)  # [B', E, L] each
        u = causal_conv1d(x, conv1d.weight[:, 0, :], conv1d.bias, activation="silu")  # [B', E, L]
        x_dbl = _project(x_proj, u)  # [B', R + 2N, L]
        delta_low, b_t, c_t = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = torch.bmm(dt_proj.weight.expand(u.shape[0], -1, -1), delta_low)  # [B', E, L]; bias: in the scan
        # SSM parameters in fp32 as published (float64 stays float64, so gradcheck works)
        ssm_dtype = torch.promote_types(A_log.dtype, torch.float32)
        A = -torch.exp(A_log.to(ssm_dtype))  # [E, N]
        return selective_scan(
            u, delta, A, b_t, c_t, D.to(ssm_dtype), z=z,
            delta_bias=dt_proj.bias.to(ssm_dtype), delta_softplus=True,
        )  # [B', E, L]

    def _reverse_idx(self, lengths: Optional[Tensor], h: Tensor) -> Optional[Tensor]:
        if lengths is None:
            return None
        if lengths.shape != (h.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: lengths must be [B={h.shape[0]}], got {tuple(lengths.shape)}"
            )
        return reverse_index(lengths, h.shape[1])  # [B, L]


# --------------------------------------------------------------------------------------------
# ViM


class BiMambaV2(_BiMambaBase):
    """ViM ("bimamba v2", `mamba_simple.Mamba(bimamba_type="v2")`): shared x/z, separate SSMs, sum.

    in_proj d → 2E rows [x | z], used by both directions; the backward direction has its own
    conv1d_b, x_proj_b, dt_proj_b, A_b_log and D_b. out = out_proj(y_f + reverse(y_b)), E → d
    (no /2: the reference's `if_devide_out` is off). Default expand 2, so E = 2d.

    Init asymmetry kept on purpose: `dt_proj_b` gets the default Linear init and its bias is NOT
    marked `_no_reinit`, so the backbone zeroes it (initial backward Δ ≈ softplus(0) = 0.69).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: Union[int, str] = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, dt_scale: float = 1.0, conv_bias: bool = True,
                 bias: bool = False):
        super().__init__(d_model, d_state, d_conv, expand, dt_rank)
        E, R, N = self.d_inner, self.dt_rank, d_state
        # construction order = the reference's, so the RNG draws line up
        self.in_proj = nn.Linear(d_model, 2 * E, bias=bias)
        self.conv1d = _depthwise_conv(E, d_conv, conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        _init_dt_proj(self.dt_proj, R, dt_min, dt_max, dt_init_floor, dt_scale)
        self.A_log = _s4d_real_log(E, N)
        self.D = _ones_skip(E)
        self.A_b_log = _s4d_real_log(E, N)
        self.conv1d_b = _depthwise_conv(E, d_conv, conv_bias)
        self.x_proj_b = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj_b = nn.Linear(R, E, bias=True)  # default init, no _no_reinit (reference quirk)
        self.D_b = _ones_skip(E)
        self.out_proj = nn.Linear(E, d_model, bias=bias)

    def forward(self, h: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            h: [B, L, d] hidden states.
            lengths: optional [B] valid lengths; if given, the backward direction reverses only
                each sample's valid prefix (padding-invariant); else the whole sequence.
        Returns:
            [B, L, d] (a transposed view of a contiguous [B, d, L] tensor).
        """
        idx = self._reverse_idx(lengths, h)
        xz = self._in_projection(h)  # [B, 2E, L]
        y_f = self._ssm(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)  # [B, E, L]
        y_b = self._ssm(reverse_time(xz, idx), self.conv1d_b, self.x_proj_b, self.dt_proj_b,
                        self.A_b_log, self.D_b)  # [B, E, L], reversed time
        y = y_f + reverse_time(y_b, idx)  # [B, E, L]
        return _project(self.out_proj, y).transpose(1, 2)  # [B, L, d]


# --------------------------------------------------------------------------------------------
# DBM


class DecomposedBiMamba(_BiMambaBase):
    """DBM (`mamba_new.Mamba`): per-direction x/z, ONE shared SSM run on a doubled batch, concat.

    in_proj d → 4E with rows [x_f | z_f | x_b | z_b]. The backward half is reversed in time and
    stacked under the forward half along the batch axis, so conv1d, x_proj, dt_proj, A_log and D
    are shared by both directions. out = out_proj([y_f | reverse(y_b)]) over channels, 2E → d
    (concatenation, not a sum). Default expand 1, so E = d.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 1,
                 dt_rank: Union[int, str] = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, dt_scale: float = 1.0, conv_bias: bool = True,
                 bias: bool = False):
        super().__init__(d_model, d_state, d_conv, expand, dt_rank)
        E, R, N = self.d_inner, self.dt_rank, d_state
        self.in_proj = nn.Linear(d_model, 4 * E, bias=bias)
        self.conv1d = _depthwise_conv(E, d_conv, conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        _init_dt_proj(self.dt_proj, R, dt_min, dt_max, dt_init_floor, dt_scale)
        self.A_log = _s4d_real_log(E, N)
        self.D = _ones_skip(E)
        self.out_proj = nn.Linear(2 * E, d_model, bias=bias)

    def forward(self, h: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            h: [B, L, d] hidden states.
            lengths: optional [B] valid lengths; if given, the backward direction reverses only
                each sample's valid prefix (padding-invariant); else the whole sequence.
        Returns:
            [B, L, d] (a transposed view of a contiguous [B, d, L] tensor).
        """
        idx = self._reverse_idx(lengths, h)
        batch, E = h.shape[0], self.d_inner
        xz = self._in_projection(h)  # [B, 4E, L]
        xz = torch.cat([xz[:, : 2 * E], reverse_time(xz[:, 2 * E:], idx)], dim=0)  # [2B, 2E, L]
        y = self._ssm(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)  # [2B, E, L]
        y = torch.cat([y[:batch], reverse_time(y[batch:], idx)], dim=1)  # [B, 2E, L]
        return _project(self.out_proj, y).transpose(1, 2)  # [B, L, d]
