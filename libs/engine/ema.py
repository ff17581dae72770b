"""Exponential moving average of the model weights, used for every evaluation (spec §6.5)."""

from __future__ import annotations

import copy
from typing import Optional, Union

import torch
from torch import nn


class ModelEma:
    """A frozen eval-mode copy of a model whose state follows `decay * ema + (1 - decay) * model`.

    Every `state_dict` entry is averaged: parameters and floating-point buffers. Integer buffers
    (e.g. BatchNorm's `num_batches_tracked`) are copied, since averaging counters is meaningless.
    Evaluate with `ema.module` directly.

    Args:
        model: the training model; it is deep-copied once here.
        decay: the constant EMA decay (0.999 in the reference).
        device: keep the copy on another device (None = same as the model).
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.999,
        device: Optional[Union[str, torch.device]] = None,
    ):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        self.decay = float(decay)
        self.device = device
        if device is not None:
            self.module.to(device)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards the current weights of `model` (same architecture)."""
        self._apply(model, self.decay)

    @torch.no_grad()
    def set(self, model: nn.Module) -> None:
        """Copy the weights of `model` exactly (decay 0)."""
        self._apply(model, 0.0)

    def _apply(self, model: nn.Module, decay: float) -> None:
        model_state = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = model_state[name].detach()
            if self.device is not None:
                value = value.to(self.device)
            if ema_value.is_floating_point() and decay > 0.0:
                ema_value.mul_(decay).add_(value, alpha=1.0 - decay)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (same keys as the model's state_dict)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state_dict)
