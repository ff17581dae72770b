"""Per-iteration learning-rate schedules of the reference (reference-spec §6.4), in closed form.

The reference steps chained schedulers once per iteration after `optimizer.step()`. This class
computes the same values directly from the iteration index k, which makes resuming trivial
(`last_epoch` is the only state) and avoids the drift of chained multiplications.

With warmup (W warmup iterations, M total iterations, base learning rate b):
    k = 0              -> warmup_start_lr (0)
    1 <= k < W         -> k * b / (W - 1)           (reaches b at k = W - 1)
    k >= W, cosine     -> eta_min + 0.5 (b - eta_min) (1 + cos(pi (k - W) / (M - W)))
    k >= W, multistep  -> b * gamma ** #{milestones m : m <= k - W}
Without warmup, W = 0 and the same post-warmup formulas apply; as in the reference (torch's
CosineAnnealingLR) eta_min is then 0 and M counts only `opt.epochs`.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from libs.core.config import OptCfg

WARMUP_ETA_MIN = 1e-8  # final LR of the warmup + cosine schedule (reference value)
# the shape of the schedule comes from the config of the current run, never from a checkpoint
_SHAPE_KEYS = (
    "warmup_steps",
    "max_steps",
    "schedule",
    "milestones",
    "gamma",
    "eta_min",
    "warmup_start_lr",
)


class WarmupScheduler(LRScheduler):
    """Linear warmup followed by cosine annealing or multi-step decay, stepped every iteration.

    Args:
        optimizer: the wrapped optimizer; each group's initial `lr` is its base LR.
        warmup_steps: W, iterations of linear warmup (0 = none).
        max_steps: M, total iterations (warmup included); the cosine reaches eta_min at k = M.
        schedule: "cosine" | "multistep".
        milestones: multistep decay points, in iterations counted from the end of the warmup.
        gamma: multistep decay factor.
        eta_min: cosine floor.
        warmup_start_lr: LR at k = 0.
        last_epoch: index of the last iteration (-1 for a fresh schedule; torch's naming).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        max_steps: int,
        schedule: str = "cosine",
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        eta_min: float = WARMUP_ETA_MIN,
        warmup_start_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        if schedule not in ("cosine", "multistep"):
            raise ValueError(f"schedule must be 'cosine' or 'multistep', got {schedule!r}")
        if not 0 <= warmup_steps <= max_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= max_steps, got {warmup_steps} and {max_steps}"
            )
        self.warmup_steps, self.max_steps = int(warmup_steps), int(max_steps)
        self.schedule, self.gamma = schedule, float(gamma)
        self.milestones = sorted(int(m) for m in milestones)
        self.eta_min, self.warmup_start_lr = float(eta_min), float(warmup_start_lr)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Learning rate used by the optimizer step of iteration `step` (0-based)."""
        w = self.warmup_steps
        if step < w:
            if w == 1:
                return self.warmup_start_lr
            return self.warmup_start_lr + step * (base_lr - self.warmup_start_lr) / (w - 1)
        if self.schedule == "multistep":
            return base_lr * self.gamma ** bisect.bisect_right(self.milestones, step - w)
        span = self.max_steps - w
        if span <= 0:
            return base_lr
        # past M the cosine would rise again; hold the floor instead
        progress = min(step - w, span) / span
        return self.eta_min + 0.5 * (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the position in the schedule (`last_epoch`, base LRs). The schedule's shape
        (W, M, milestones, ...) stays the one built from this run's config, so resuming with a
        changed config follows the new schedule from the saved iteration on."""
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in _SHAPE_KEYS})


def build_scheduler(
    optimizer: torch.optim.Optimizer, opt: OptCfg, iters_per_epoch: int
) -> WarmupScheduler:
    """The reference `make_scheduler`: epochs are converted to iterations with `iters_per_epoch`.

    With warmup the schedule spans `epochs + warmup_epochs` epochs; without, `epochs`. Multistep
    milestones (`opt.schedule_steps`, in epochs after the warmup) become iterations.
    The reference's warmup-free multistep branch crashes (NameError); here it uses `schedule_gamma`.
    """
    if iters_per_epoch <= 0:
        raise ValueError(
            f"the training loader yields no batch per epoch (iters_per_epoch={iters_per_epoch}); "
            "check the training split and loader.batch_size"
        )
    warmup_epochs = opt.warmup_epochs if opt.warmup else 0
    return WarmupScheduler(
        optimizer,
        warmup_steps=warmup_epochs * iters_per_epoch,
        max_steps=(opt.epochs + warmup_epochs) * iters_per_epoch,
        schedule=opt.schedule_type,
        milestones=[s * iters_per_epoch for s in opt.schedule_steps],
        gamma=opt.schedule_gamma,
        eta_min=WARMUP_ETA_MIN if opt.warmup else 0.0,
    )


def total_epochs(opt: OptCfg) -> int:
    """Number of training epochs, warmup included (the reference `max_epochs`)."""
    return opt.epochs + (opt.warmup_epochs if opt.warmup else 0)
