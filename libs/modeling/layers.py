"""Small layers shared by the backbone, the neck, the heads and the blocks.

Ported from ActionFormer's `libs/modeling/blocks.py` with the same names and numerics, so a
reviewer can diff the behaviour function by function. Masks are `[B, 1, T]` bool throughout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class MaskedConv1D(nn.Module):
    """1-D convolution whose output is zeroed at padded positions.

    Only "same" convolutions are supported (odd kernel, padding = kernel // 2), so that output
    position i of a stride-s conv is centred on input position s·i and the downsampled mask is
    simply `mask[..., ::s]` (the reference's nearest interpolation to T // s, for T % s == 0).
    The bias, if any, starts at zero. The wrapped `nn.Conv1d` is `.conv` (checkpoint names).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1 or padding != kernel_size // 2:
            raise ValueError(
                f"MaskedConv1D needs an odd kernel and padding = kernel // 2, got kernel "
                f"{kernel_size}, padding {padding}"
            )
        self.stride = stride
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C_in, T], mask [B, 1, T] bool -> (out [B, C_out, T // s], mask [B, 1, T // s])."""
        if x.shape[-1] % self.stride != 0:
            raise ValueError(
                f"MaskedConv1D: length {x.shape[-1]} is not divisible by stride {self.stride}"
            )
        out_mask = mask[..., :: self.stride] if self.stride > 1 else mask  # [B, 1, T // s]
        out = self.conv(x) * out_mask.to(x.dtype)  # [B, C_out, T // s]
        return out, out_mask.bool()


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of a `[B, C, T]` tensor (ActionFormer's custom version).

    Parameters have shape [1, C, 1], as in the published checkpoints.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_channels, self.eps, self.affine = num_channels, eps, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
            self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, T] -> [B, C, T]."""
        if x.dim() != 3 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"LayerNorm({self.num_channels}) expects [B, {self.num_channels}, T], "
                f"got {tuple(x.shape)}"
            )
        res = x - x.mean(dim=1, keepdim=True)  # [B, C, T]
        var = res.pow(2).mean(dim=1, keepdim=True)  # [B, 1, T]
        out = res / torch.sqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out


class Scale(nn.Module):
    """A learnable scalar (init 1.0) that multiplies the regression output of one level."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False) -> Tensor:
    """Stochastic depth per sample: zero a whole sample with prob `drop_prob`, rescale the rest.

    Args:
        x: [B, ...] residual branch output.
    Returns:
        [B, ...]; `x` itself when `drop_prob == 0` or not training.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    noise = torch.rand(shape, dtype=x.dtype, device=x.device)  # [B, 1, ...]
    keep = torch.floor(keep_prob + noise)  # 1 with prob keep_prob, else 0
    return x / keep_prob * keep


class AffineDropPath(nn.Module):
    """Drop path with a per-channel learnable scale (LayerScale), initialised small (1e-4).

    The near-zero init makes every residual block start close to the identity.
    """

    def __init__(self, num_dim: int, drop_prob: float = 0.0, init_scale_value: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(init_scale_value * torch.ones(1, num_dim, 1))
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, T] -> [B, C, T]."""
        return drop_path(self.scale * x, self.drop_prob, self.training)


class MaxPooler(nn.Module):
    """Masked max-pool (kernel 3, stride 2, padding 1), the downsampling of the Mamba blocks.

    out_mask[i] = mask[2i] (the reference's nearest interpolation to T // 2). With an odd valid
    length the last valid window also covers one padded input, as in the reference.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2, padding: int = 1):
        super().__init__()
        self.stride = stride
        self.ds_pooling = nn.MaxPool1d(kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, T], mask [B, 1, T] -> ([B, C, T // s], [B, 1, T // s])."""
        if x.shape[-1] % self.stride != 0:
            raise ValueError(
                f"MaxPooler: length {x.shape[-1]} is not divisible by stride {self.stride}"
            )
        out_mask = mask[..., :: self.stride]  # [B, 1, T // s]
        out = self.ds_pooling(x) * out_mask.to(x.dtype)  # [B, C, T // s]
        return out, out_mask.bool()


def get_sinusoid_encoding(n_position: int, d_hid: int) -> Tensor:
    """Sinusoidal position table, angle = pos / 10000^(2·(j // 2) / d); sin on even j, cos on odd.

    Computed in float64 (as the reference's numpy), returned as float32 [1, d_hid, n_position].
    """
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]  # [T, 1]
    j = torch.arange(d_hid, dtype=torch.float64)[None, :]  # [1, d]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / d_hid)  # [T, d]
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))  # [T, d]
    return table.float().t().unsqueeze(0)  # [1, d, T]


def prior_bias(prob: float) -> float:
    """Logit b with sigmoid(b) = prob: -log((1 - p) / p) (the classifier prior init)."""
    return -math.log((1.0 - prob) / prob)
