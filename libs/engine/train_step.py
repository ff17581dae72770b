"""One optimizer step (house style §2.8, reference-spec §6.5), the same code for 1 or N micro-batches.

    zero_grad → for each micro-batch: losses = model(batch) under autocast, loss = sum(losses)
    + finite check, backward → rescale → clip → optimizer.step → scheduler.step → EMA update

`TrainState` holds what a step changes; `libs.engine.resume` saves and restores it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from libs.engine import distributed as dist_utils
from libs.engine.amp import autocast
from libs.engine.ema import ModelEma
from libs.inference import model_device
from libs.modeling.losses import ema_loss_normalizer


@dataclass
class TrainState:
    """Everything a resumed run must get back, besides the RNG states."""

    model: nn.Module
    ema: ModelEma
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0  # 0-based epoch in progress (= completed epochs between epochs)
    iteration: int = 0  # optimizer steps done
    epoch_iter: int = 0  # optimizer steps done inside `epoch`
    wrapped: Optional[nn.Module] = None  # the DistributedDataParallel wrapper, if any
    scaler: Optional[torch.amp.GradScaler] = None  # fp16 loss scaling
    amp: str = "none"  # opt.amp

    @property
    def forward_model(self) -> nn.Module:
        """The module to call for training forwards (DDP wrapper or the model itself)."""
        return self.wrapped if self.wrapped is not None else self.model


def train_step(
    state: TrainState, batch, clip_grad_l2norm: float, epoch: int, iter_idx: int
) -> dict[str, Tensor]:
    """One optimizer step over one batch or a list of micro-batches (gradient accumulation).

    The step equals one step on the concatenated global batch (all micro-batches of all
    processes): see `_forward_backward`. With one micro-batch in one process that is exactly the
    reference step.

    Returns:
        The detached loss terms plus `final_loss`, no host sync (values of the global batch; under
        torchrun, rank 0's estimate of them).
    """
    micro = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    state.optimizer.zero_grad(set_to_none=True)
    out, grad_factor = _forward_backward(state, micro, epoch, iter_idx)
    _optimizer_step(state, clip_grad_l2norm, grad_factor)
    state.scheduler.step()
    state.ema.update(state.model)
    state.iteration += 1
    return out


def _forward_backward(
    state: TrainState, micro: list, epoch: int, iter_idx: int
) -> tuple[dict[str, Tensor], float]:
    """Forward/backward every micro-batch so that the gradient is the global batch's.

    The detector divides its summed losses by its EMA normaliser (`libs.modeling.losses.
    ema_loss_normalizer`), updated at every forward. One big batch updates it once with the
    batch's num_pos; so with several micro-batches and/or processes every micro-batch starts
    from the same previous value n0, the micro-batch's num_pos is the detector's `last_num_pos`,
    and its backward gets the loss times n_i / n0, i.e. the gradient of its *summed* loss over
    n0. After the last micro-batch, num_pos is summed over micro-batches and all-reduced over
    ranks (P), the normaliser becomes N = ema(n0, P) on every rank, and the gradients are
    multiplied by world_size * n0 / N (DDP averages over ranks). With one micro-batch in one
    process the forward's own update already is N, so both factors are exactly 1 (the
    reference step, bit for bit). A model without `loss_normalizer` is assumed to return mean
    losses: micro-batch losses are divided by their number instead.

    Returns:
        (loss terms of the global batch, factor for the accumulated gradients).
    """
    model, world = state.model, dist_utils.get_world_size()
    single = len(micro) == 1 and world == 1
    norm = getattr(model, "loss_normalizer", None)  # float64 buffer [] of the detector
    rescale = norm is not None and not single
    n0 = float(norm) if rescale else 0.0  # read only when needed: a host sync on a GPU
    sums: dict[str, Tensor] = {}
    positives = 0.0
    for i, batch in enumerate(micro):
        no_sync = state.wrapped is not None and i < len(micro) - 1
        with state.wrapped.no_sync() if no_sync else nullcontext():  # one all-reduce per step
            if rescale:
                norm.fill_(n0)
            losses, loss = _forward(state, batch, epoch, iter_idx)
            scale = 1.0 / len(micro)
            if rescale:
                scale = float(norm) / n0
                positives += model.last_num_pos
            _backward(state, loss * scale)
        for key, value in {**losses, "final_loss": loss}.items():
            sums[key] = sums.get(key, 0.0) + value.detach() * scale
    if not rescale:
        return sums, 1.0
    total = dist_utils.all_reduce_sum(positives, model_device(model))
    norm.fill_(ema_loss_normalizer(n0, total))
    factor = world * n0 / float(norm)
    # this rank's share, scaled by world: an unbiased estimate of the global loss for the logs
    return {k: v * factor for k, v in sums.items()}, factor


def _forward(
    state: TrainState, batch, epoch: int, iter_idx: int
) -> tuple[dict[str, Tensor], Tensor]:
    device = model_device(state.model)
    with autocast(state.amp, device):
        losses = state.forward_model(batch)  # already weighted terms, e.g. cls_loss, reg_loss
    losses = {k: v.float() for k, v in losses.items()}
    loss = sum(losses.values())
    _check_finite(loss, losses, epoch, iter_idx)
    return losses, loss


def _check_finite(loss: Tensor, losses: dict[str, Tensor], epoch: int, iter_idx: int) -> None:
    """One host sync per micro-batch: a NaN step would otherwise poison the weights and the EMA.

    Under torchrun every rank learns of a NaN on any rank, so all stop (none hangs in a
    collective waiting for a rank that raised).
    """
    finite = bool(torch.isfinite(loss))
    if dist_utils.any_rank(not finite, loss.device):
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        where = "" if finite else f" ({terms})"
        raise FloatingPointError(
            f"non-finite training loss at epoch {epoch + 1} iteration {iter_idx}{where}"
            f"{' on another rank' if finite else ''}; try a lower opt.learning_rate or set "
            "train.clip_grad_l2norm > 0"
        )


def _backward(state: TrainState, loss: Tensor) -> None:
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
    else:
        loss.backward()


def _optimizer_step(state: TrainState, clip_grad_l2norm: float, grad_factor: float) -> None:
    """(unscale) → rescale accumulated gradients → clip → step (GradScaler skips inf steps)."""
    params = [p for p in state.model.parameters() if p.grad is not None]
    if state.scaler is not None:
        state.scaler.unscale_(state.optimizer)
    if grad_factor != 1.0:
        for param in params:
            param.grad.mul_(grad_factor)
    if clip_grad_l2norm > 0:
        torch.nn.utils.clip_grad_norm_(params, clip_grad_l2norm)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
