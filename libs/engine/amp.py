"""Mixed precision for training (`opt.amp: none | bf16 | fp16`).

The forward pass runs under `torch.autocast` on the model's device type; parameters, optimizer
state, EMA and gradients stay fp32. The selective-scan ops cast their inputs to fp32 and keep
the scan state in fp32 (libs/ops/scan.py), so the SSM recurrence never runs in half precision;
only the GEMMs/convolutions around it do. fp16 needs loss scaling (`torch.amp.GradScaler`), bf16
has fp32's exponent range and does not.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Optional

import torch

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(mode: str) -> Optional[torch.dtype]:
    """The autocast dtype of an `opt.amp` value (None for "none").

    Raises:
        ValueError: unknown mode.
    """
    if mode not in AMP_DTYPES:
        raise ValueError(f"opt.amp must be one of {list(AMP_DTYPES)}, got {mode!r}")
    return AMP_DTYPES[mode]


def autocast(mode: str, device: torch.device) -> AbstractContextManager:
    """The autocast context of one forward pass (a no-op for "none")."""
    dtype = amp_dtype(mode)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(mode: str, device: torch.device) -> Optional[torch.amp.GradScaler]:
    """A GradScaler for fp16, None otherwise (bf16 and fp32 need no loss scaling)."""
    if amp_dtype(mode) is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)
