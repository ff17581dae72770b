"""Training and evaluation loops (reference-spec §6.5-6.6, house style §2.8), no hooks framework.

One training iteration (one optimizer step): zero_grad → for each of the `opt.accumulate`
micro-batches: losses = model(batch) under autocast, loss = sum(losses) + finite check, backward
→ clip → optimizer.step → scheduler.step → EMA update. Evaluation always runs on the EMA copy
(`ema.module`), on rank 0 only.

Checkpoints (layout in libs/engine/checkpoint.py), written atomically by rank 0:
- `last.pth`: the newest checkpoint, whatever its kind; `--resume RUN/last.pth` continues there;
- `epoch_NNN.pth` every `opt.ckpt_freq` epochs;
- `iter_NNNNNNN.pth` every `opt.ckpt_every_iters` optimizer steps inside an epoch, of which the
  newest `opt.keep_last` are kept;
- on Ctrl-C / SIGTERM, `last.pth` at the end of the current step, then `TrainingInterrupted`.

Exact resume: a checkpoint holds weights, EMA, optimizer, scheduler, GradScaler, loss
normaliser, counters and every RNG state. Each epoch re-seeds the loader (generator and
`sampler.set_epoch`) from (seed, epoch, rank) alone, so a resumed epoch replays the same batches;
a mid-epoch resume re-reads the epoch's finished batches without running the model, then puts
the RNG states back to the checkpoint's. With `loader.num_workers > 0` the training workers are
not persistent, so each epoch's workers are seeded from that epoch's generator and the replay is
exact too. A run killed at any point and resumed from `last.pth` ends with the same weights,
bit for bit, as an uninterrupted one on CPU (CUDA adds the usual non-deterministic kernels).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from libs.core.config import Config, config_to_dict
from libs.core.structures import Detections
from libs.engine import distributed as dist_utils
from libs.engine.amp import autocast, make_grad_scaler
from libs.engine.checkpoint import (
    iteration_checkpoint_name,
    load_checkpoint,
    load_weights,
    prune_iteration_checkpoints,
    save_checkpoint,
    save_checkpoint_many,
    strip_prefix,
)
from libs.engine.ema import ModelEma
from libs.engine.optim import build_optimizer
from libs.engine.scheduler import build_scheduler, total_epochs
from libs.evaluation import EvalResult
from libs.inference import collect_raw, score, write_eval_files
from libs.utils.seeding import capture_rng_state, derive_seed, restore_rng_state

logger = logging.getLogger(__name__)

_RESUME_KEYS = ("model", "model_ema", "optimizer", "scheduler", "epoch", "iteration", "rng")


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM stopped training after a step; `last.pth` holds a resumable checkpoint."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


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


def _progress(iterable, desc: str, total: Optional[int] = None):
    """A tqdm bar on interactive terminals only; log files and CI get the periodic log lines."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        leave=False,
        dynamic_ncols=True,
        disable=not sys.stderr.isatty() or not dist_utils.is_main_process(),
    )


def _check_finite(loss: Tensor, losses: dict[str, Tensor], epoch: int, iter_idx: int) -> None:
    # one host sync per iteration: a NaN step would otherwise poison the weights and the EMA.
    # Under torchrun every rank learns of a NaN on any rank, so all stop (none hangs in a
    # collective waiting for a rank that raised).
    finite = bool(torch.isfinite(loss))
    if dist_utils.any_rank(not finite, loss.device):
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        where = "" if finite else f" ({terms})"
        raise FloatingPointError(
            f"non-finite training loss at epoch {epoch + 1} iteration {iter_idx}{where}"
            f"{' on another rank' if finite else ''}; try a lower opt.learning_rate or set "
            "train.clip_grad_l2norm > 0"
        )


def _forward(
    state: TrainState, batch, epoch: int, iter_idx: int
) -> tuple[dict[str, Tensor], Tensor]:
    device = _model_device(state.model)
    with autocast(state.amp, device):
        losses = state.forward_model(batch)  # already weighted terms, e.g. cls_loss, reg_loss
    losses = {k: v.float() for k, v in losses.items()}
    loss = sum(losses.values())
    _check_finite(loss, losses, epoch, iter_idx)
    return losses, loss


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _backward(state: TrainState, loss: Tensor) -> None:
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
    else:
        loss.backward()


def train_step(
    state: TrainState, batch, clip_grad_l2norm: float, epoch: int, iter_idx: int
) -> dict[str, Tensor]:
    """One optimizer step over one batch or a list of micro-batches (gradient accumulation).

    With one micro-batch in one process this is the reference step, the detector updating its
    loss normaliser itself. Otherwise (`opt.accumulate > 1` and/or torchrun) the step equals one
    step on the concatenated global batch: see `_accumulate_global`.

    Returns:
        The detached loss terms plus `final_loss`, no host sync (values of the global batch; under
        torchrun, rank 0's estimate of them).
    """
    micro = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    state.optimizer.zero_grad(set_to_none=True)
    if len(micro) == 1 and dist_utils.get_world_size() == 1:
        losses, loss = _forward(state, micro[0], epoch, iter_idx)
        _backward(state, loss)
        out, grad_factor = {k: v.detach() for k, v in losses.items()}, 1.0
        out["final_loss"] = loss.detach()
    else:
        out, grad_factor = _accumulate_global(state, micro, epoch, iter_idx)
    _optimizer_step(state, clip_grad_l2norm, grad_factor)
    state.scheduler.step()
    state.ema.update(state.model)
    state.iteration += 1
    return out


def _accumulate_global(
    state: TrainState, micro: list, epoch: int, iter_idx: int
) -> tuple[dict[str, Tensor], float]:
    """Forward/backward every micro-batch so that the gradient is the global batch's.

    The detector divides its summed losses by the EMA normaliser `n ← m n + (1 - m) max(num_pos,
    1)` (m = 0.9), updated at every forward. One big batch updates it once with the batch's
    num_pos; so here every micro-batch starts from the same previous value n0, the micro-batch's
    num_pos is the detector's `last_num_pos`, and its backward gets the loss
    times n_i / n0, i.e. the gradient of its *summed* loss over n0. After the last micro-batch,
    num_pos is summed over micro-batches and all-reduced over ranks (P), the normaliser becomes
    N = m n0 + (1 - m) max(P, 1) on every rank, and the gradients are multiplied by
    world_size * n0 / N (DDP averages over ranks). A model without `loss_normalizer` is assumed
    to return mean losses: micro-batch losses are divided by their number instead.

    Returns:
        (loss terms of the global batch, factor for the accumulated gradients).
    """
    model, world = state.model, dist_utils.get_world_size()
    n0 = getattr(model, "loss_normalizer", None)
    momentum = getattr(model, "loss_normalizer_momentum", 0.9)
    sums: dict[str, Tensor] = {}
    positives = 0.0
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        no_sync = state.wrapped is not None and not last
        with state.wrapped.no_sync() if no_sync else nullcontext():  # one all-reduce per step
            if n0 is not None:
                model.loss_normalizer = n0
            losses, loss = _forward(state, batch, epoch, iter_idx)
            if n0 is None:
                scale = 1.0 / len(micro)
            else:
                scale = model.loss_normalizer / n0
                positives += model.last_num_pos
            _backward(state, loss * scale)
        for key, value in {**losses, "final_loss": loss}.items():
            sums[key] = sums.get(key, 0.0) + value.detach() * scale
    if n0 is None:
        return sums, 1.0
    total = dist_utils.all_reduce_sum(positives, _model_device(model))
    model.loss_normalizer = momentum * n0 + (1 - momentum) * max(total, 1.0)
    # this rank's share, scaled by world: an unbiased estimate of the global loss for the logs
    out = {k: v * (world * n0 / model.loss_normalizer) for k, v in sums.items()}
    return out, world * n0 / model.loss_normalizer


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


def _log_iteration(
    writer: Optional[SummaryWriter],
    values: dict[str, Tensor],
    lr: float,
    epoch: int,
    iter_idx: int,
    num_iters: int,
    global_step: int,
    sec_per_iter: float,
) -> None:
    floats = {k: v.item() for k, v in values.items()}  # the only host syncs of the loop
    terms = " ".join(f"{k} {v:.4f}" for k, v in floats.items() if k != "final_loss")
    logger.info(
        "epoch %d [%d/%d] lr %.3e loss %.4f (%s) %.3f s/it",
        epoch + 1,
        iter_idx,
        num_iters,
        lr,
        floats["final_loss"],
        terms,
        sec_per_iter,
    )
    if writer is not None:
        writer.add_scalar("train/learning_rate", lr, global_step)
        for key, value in floats.items():
            writer.add_scalar(f"train/{key}", value, global_step)


def train_one_epoch(
    state: TrainState,
    loader,
    epoch: int,
    device: Union[str, torch.device],
    *,
    clip_grad_l2norm: float = -1.0,
    print_freq: int = 10,
    writer: Optional[SummaryWriter] = None,
    accumulate: int = 1,
    skip_steps: int = 0,
    resume_rng: Optional[dict] = None,
    after_step: Optional[Callable[[TrainState], None]] = None,
) -> dict[str, float]:
    """Train one pass over `loader` (`epoch` is 0-based; logs show it 1-based, like checkpoints).

    An epoch has `len(loader) // accumulate` optimizer steps; leftover micro-batches are dropped.
    Logs to the console and TensorBoard at steps `i != 0` with `i % print_freq == 0` (global step
    `epoch * steps + i`, as in the reference); the logged learning rate is the one the optimizer
    step of that iteration used.

    Args:
        accumulate: micro-batches per optimizer step.
        skip_steps: steps of this epoch already done (mid-epoch resume): their batches are read
            and dropped, which replays the loader's randomness, then `resume_rng` (the
            checkpoint's RNG states) is restored.
        after_step: called after every step with `state` (checkpointing, Ctrl-C handling).

    Returns:
        Mean of every loss term over the steps run here (floats).
    """
    state.model.train()
    num_steps = len(loader) // accumulate
    batches = iter(loader)
    for _ in range(skip_steps * accumulate):
        next(batches)
    if resume_rng is not None:
        restore_rng_state(resume_rng)
    sums: dict[str, Tensor] = {}
    tic, count = time.time(), 0
    bar = _progress(range(skip_steps, num_steps), f"epoch {epoch + 1}", num_steps - skip_steps)
    with logging_redirect_tqdm() if not bar.disable else nullcontext():
        for iter_idx in bar:
            micro = [next(batches).to(device) for _ in range(accumulate)]
            lr = state.optimizer.param_groups[0]["lr"]
            values = train_step(state, micro, clip_grad_l2norm, epoch, iter_idx)
            state.epoch_iter = iter_idx + 1
            for key, value in values.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            count += 1
            if iter_idx != 0 and print_freq > 0 and iter_idx % print_freq == 0:
                _log_iteration(
                    writer,
                    values,
                    lr,
                    epoch,
                    iter_idx,
                    num_steps,
                    epoch * num_steps + iter_idx,
                    (time.time() - tic) / count,
                )
            if after_step is not None:
                after_step(state)
    return {k: v.item() / max(count, 1) for k, v in sums.items()}


def _detect_and_score(
    model: nn.Module, loader, dataset, cfg: Config, device, epoch: Optional[int] = None
) -> tuple[list[Detections], EvalResult]:
    raw = collect_raw(model, loader, id_to_name=dataset.id_to_name, config=cfg, device=device)
    return score(raw, cfg, epoch)


def checkpoint_state(
    state: TrainState, cfg: Config, generator: Optional[torch.Generator]
) -> dict[str, Any]:
    """The dict saved as `last.pth` / `epoch_NNN.pth` / `iter_*.pth` (see checkpoint.py).

    Under torchrun every rank must call it (the RNG states are gathered on rank 0); the returned
    dict is only complete on rank 0.
    """
    normalizer = getattr(state.model, "loss_normalizer", None)
    rng = capture_rng_state(generator)
    return {
        "model": state.model.state_dict(),
        "model_ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "grad_scaler": None if state.scaler is None else state.scaler.state_dict(),
        "epoch": state.epoch,
        "epoch_iter": state.epoch_iter,
        "iteration": state.iteration,
        "loss_normalizer": None if normalizer is None else float(normalizer),
        "config": config_to_dict(cfg),
        "rng": rng,
        "rng_per_rank": dist_utils.gather_objects(rng),
    }


def restore_training_state(
    path: Union[str, Path],
    state: TrainState,
    cfg: Config,
    generator: Optional[torch.Generator] = None,
) -> dict[str, Any]:
    """Load a checkpoint written by `train` into `state` (weights, EMA, optimizer, scheduler,
    GradScaler, counters, loss normaliser) and restore every RNG, so training continues as if
    never stopped.

    Returns:
        The RNG states restored on this rank (a mid-epoch resume restores them again after
        replaying the finished batches).

    Raises:
        ValueError: the file is not one of our training checkpoints, or does not fit the model.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    missing = [k for k in _RESUME_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"--resume {path}: not a checkpoint written by train.py (missing {missing}); "
            "published weights can be evaluated with eval.py but not resumed"
        )
    load_weights(state.model, strip_prefix(ckpt["model"]), source=str(path))
    load_weights(state.ema.module, strip_prefix(ckpt["model_ema"]), source=f"{path} (EMA)")
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    if state.scaler is not None and ckpt.get("grad_scaler") is not None:
        state.scaler.load_state_dict(ckpt["grad_scaler"])
    state.epoch, state.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
    state.epoch_iter = int(ckpt.get("epoch_iter", 0))
    if ckpt.get("loss_normalizer") is not None and hasattr(state.model, "loss_normalizer"):
        state.model.loss_normalizer = float(ckpt["loss_normalizer"])
    rng = _rank_rng(ckpt, path)
    restore_rng_state(rng, generator)
    _warn_config_drift(ckpt.get("config"), cfg, path)
    logger.info(
        "resumed from %s: epoch %d, %d steps into it, %d iterations in all",
        path,
        state.epoch + 1,
        state.epoch_iter,
        state.iteration,
    )
    return rng


def _rank_rng(ckpt: dict[str, Any], path) -> dict[str, Any]:
    """This rank's saved RNG states; rank 0's when the world size changed (then inexact)."""
    per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
    rank, world = dist_utils.get_rank(), dist_utils.get_world_size()
    if len(per_rank) == world:
        return per_rank[rank]
    if dist_utils.is_main_process():
        logger.warning(
            "%s was written by %d process(es), this run has %d: every rank restores rank 0's "
            "RNG states, so crops and dropout differ from an uninterrupted run",
            path,
            len(per_rank),
            world,
        )
    return per_rank[0]


def _warn_config_drift(saved: Optional[dict], cfg: Config, path) -> None:
    """Resuming with a different config is allowed (e.g. more epochs) but must be visible."""
    if not saved:
        return
    diffs = _diff_dicts(saved, config_to_dict(cfg))
    diffs = [d for d in diffs if not d.startswith("config_path")]
    if diffs:
        logger.warning("config differs from the one stored in %s: %s", path, "; ".join(diffs))


def _diff_dicts(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb, name = a.get(key), b.get(key), f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_dicts(va, vb, name + ".")
        elif va != vb:
            out.append(f"{name}: {va!r} -> {vb!r}")
    return out


def _write_checkpoint(
    state: TrainState, cfg: Config, run_folder: Path, generator, names: list[str]
) -> dict[str, Any]:
    """Write one checkpoint under `names` (rank 0), then as `last.pth`; all ranks must call.
    Returns the saved dict (complete on rank 0 only)."""
    ckpt = checkpoint_state(state, cfg, generator)
    if dist_utils.is_main_process():
        save_checkpoint_many([run_folder / n for n in names] + [run_folder / "last.pth"], ckpt)
    return ckpt


def _save_epoch(
    state: TrainState, cfg: Config, run_folder: Path, generator: Optional[torch.Generator]
) -> dict[str, Any]:
    names = []
    if cfg.opt.ckpt_freq > 0 and state.epoch % cfg.opt.ckpt_freq == 0:
        names.append(f"epoch_{state.epoch:03d}.pth")
    return _write_checkpoint(state, cfg, run_folder, generator, names)


class _BestOnVal:
    """`eval.checkpoint=best-on-val`: the best evaluated epoch so far (highest average mAP, the
    earlier epoch on ties). A new best writes `best.pth` (that epoch's checkpoint plus a
    `best_on_val` record: epoch and numbers), `results.json` and `metrics.json`. A resumed run
    reads the record back from the run folder's `best.pth` (if it is not from a later epoch)."""

    def __init__(self, run_folder: Path, resumed_epoch: int):
        self.path = run_folder / "best.pth"
        self.epoch: Optional[int] = None  # 1-based
        self.result: Optional[EvalResult] = None
        if resumed_epoch > 0 and self.path.is_file():
            record = load_checkpoint(self.path, map_location="cpu").get("best_on_val")
            if record and record["epoch"] <= resumed_epoch:
                self.epoch = record["epoch"]
                self.result = EvalResult(
                    tiou=list(record["tiou"]),
                    mAP=list(record["mAP"]),
                    average_mAP=float(record["average_mAP"]),
                    ap=np.asarray(record["ap"], dtype=np.float64),
                    class_names=list(record["class_names"]),
                    protocol=dict(record["protocol"]),
                )
                logger.info("best-on-val so far: epoch %d (from %s)", self.epoch, self.path)

    def update(self, epoch: int, ckpt, detections, result, dataset, run_folder: Path) -> None:
        if self.result is not None and result.average_mAP <= self.result.average_mAP:
            return
        self.epoch, self.result = epoch, result
        record = {
            "epoch": epoch,
            "tiou": list(result.tiou),
            "mAP": list(result.mAP),
            "average_mAP": float(result.average_mAP),
            "ap": np.asarray(result.ap).tolist(),
            "class_names": list(result.class_names),
            "protocol": dict(result.protocol),
        }
        save_checkpoint(self.path, {**ckpt, "best_on_val": record})
        write_eval_files(
            detections, result, dataset.id_to_name, run_folder / "results.json",
            run_folder / "metrics.json",
        )  # fmt: skip
        logger.info(
            "new best on the evaluation split: epoch %d, average mAP %.4f; %s written",
            epoch, result.average_mAP, self.path,
        )  # fmt: skip

    def report(self, max_epochs: int) -> Optional[EvalResult]:
        if self.result is not None:
            logger.info(
                "best-on-val: reporting epoch %d of %d (average mAP %.4f), weights %s",
                self.epoch, max_epochs, self.result.average_mAP, self.path,
            )  # fmt: skip
        return self.result


class _StopRequest:
    """SIGINT/SIGTERM → finish the current step, checkpoint, stop; a second Ctrl-C aborts at once.

    Stopping only between steps keeps the checkpoint consistent (never between the optimizer
    step and the scheduler / EMA updates). Handlers are only installed from the main thread.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "%s received: stopping after the current iteration with a checkpoint "
            "(press Ctrl-C again to abort without one)",
            signal.Signals(signum).name,
        )


def _resume_command(cfg: Config, checkpoint: Path) -> str:
    world = dist_utils.get_world_size()
    launcher = f"torchrun --nproc_per_node {world}" if world > 1 else "python"
    return f"{launcher} train.py {cfg.config_path or 'CONFIG'} --resume {checkpoint}"


class _StepHook:
    """Called after every optimizer step: Ctrl-C handling and iteration checkpoints."""

    def __init__(self, state, cfg, run_folder, generator, stop, steps_per_epoch, device):
        self.state, self.cfg, self.run_folder = state, cfg, run_folder
        self.generator, self.stop = generator, stop
        self.steps_per_epoch, self.device = steps_per_epoch, device

    def __call__(self, state: TrainState) -> None:
        every = self.cfg.opt.ckpt_every_iters
        if dist_utils.any_rank(self.stop.requested, self.device):
            self.interrupt()
        if every > 0 and state.iteration % every == 0 and state.epoch_iter < self.steps_per_epoch:
            name = iteration_checkpoint_name(state.iteration)
            _write_checkpoint(state, self.cfg, self.run_folder, self.generator, [name])
            if dist_utils.is_main_process():
                prune_iteration_checkpoints(self.run_folder, self.cfg.opt.keep_last)

    def interrupt(self) -> None:
        state = self.state
        _write_checkpoint(state, self.cfg, self.run_folder, self.generator, [])
        last = self.run_folder / "last.pth"
        raise TrainingInterrupted(
            f"training interrupted at epoch {state.epoch + 1} after {state.epoch_iter} of its "
            f"{self.steps_per_epoch} iterations ({state.iteration} in all); checkpoint {last}; "
            f"resume with: {_resume_command(self.cfg, last)}",
            last,
        )


def _seed_epoch(loader, generator: Optional[torch.Generator], seed: int, epoch: int) -> None:
    """Make the epoch's shuffling and worker seeds a function of (seed, epoch, rank) only."""
    if generator is not None:
        generator.manual_seed(derive_seed(seed, "loader", epoch, dist_utils.get_rank()))
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def train(
    cfg: Config,
    model: nn.Module,
    train_loader,
    run_folder: Union[str, Path],
    *,
    device: Union[str, torch.device],
    val_loader=None,
    val_dataset=None,
    resume: Optional[Union[str, Path]] = None,
    generator: Optional[torch.Generator] = None,
):
    """Train `model` (already on `device`) for `total_epochs(cfg.opt)` epochs.

    Evaluates `ema.module` after every epoch >= `opt.eval_start_epoch` (when >= 0) and always
    after the last one; the last evaluation also writes `results.json` and `metrics.json` into
    the run folder. With `eval.checkpoint: best-on-val` the best evaluated epoch is kept as
    `best.pth`, those two files hold its detections and numbers (protocol "epoch" names it) and
    its result is returned. TensorBoard scalars go to `run_folder/logs`. Under torchrun (process group
    initialised, see libs/engine/distributed.py) the model is wrapped in DDP; rank 0 alone
    logs to TensorBoard, checkpoints and evaluates.

    Args:
        train_loader: yields micro-batches (`loader.batch_size / (world * opt.accumulate)`).
        generator: the training loader's generator (from `fix_random_seed`; default the loader's
            own); it is re-seeded every epoch so a resumed run shuffles exactly like the
            uninterrupted one.
        resume: a checkpoint written by this function (`last.pth`, `epoch_NNN.pth`, `iter_*`).

    Returns:
        The final (best-on-val: the best epoch's) `EvalResult` on rank 0, or None (other ranks,
        or no validation loader).

    Raises:
        TrainingInterrupted: after Ctrl-C / SIGTERM, once `last.pth` is written.
        FloatingPointError: non-finite loss; no checkpoint is written, the last one stays.
    """
    run_folder, device = Path(run_folder), torch.device(device)
    generator = generator if generator is not None else getattr(train_loader, "generator", None)
    steps_per_epoch = len(train_loader) // cfg.opt.accumulate
    optimizer = build_optimizer(model, cfg.opt)
    scheduler = build_scheduler(optimizer, cfg.opt, steps_per_epoch)
    wrapped = dist_utils.wrap_model(model)  # before the EMA copy: DDP broadcasts rank 0's init
    state = TrainState(model, ModelEma(model, cfg.opt.ema_decay), optimizer, scheduler)
    state.wrapped, state.amp = wrapped if wrapped is not model else None, cfg.opt.amp
    state.scaler = make_grad_scaler(cfg.opt.amp, device)
    resume_rng = None
    if resume is not None:
        resume_rng = restore_training_state(resume, state, cfg, generator)
    max_epochs = total_epochs(cfg.opt)
    logger.info(
        "training %d epochs x %d iterations (x %d micro-batches, %d process(es), amp %s) "
        "from epoch %d; run folder %s",
        max_epochs,
        steps_per_epoch,
        cfg.opt.accumulate,
        dist_utils.get_world_size(),
        cfg.opt.amp,
        state.epoch + 1,
        run_folder,
    )
    main = dist_utils.is_main_process()
    writer = SummaryWriter(str(run_folder / "logs")) if main else None
    result = None
    best = None
    if cfg.eval.checkpoint == "best-on-val" and main and val_loader is not None:
        best = _BestOnVal(run_folder, state.epoch)
    try:
        with _StopRequest() as stop:
            hook = _StepHook(state, cfg, run_folder, generator, stop, steps_per_epoch, device)
            for epoch in range(state.epoch, max_epochs):
                _seed_epoch(train_loader, generator, cfg.seed, epoch)
                skip = min(state.epoch_iter, steps_per_epoch) if epoch == state.epoch else 0
                _train_epoch(
                    state, cfg, train_loader, epoch, max_epochs, device, writer, skip,
                    resume_rng if skip else None, hook,
                )  # fmt: skip
                state.epoch, state.epoch_iter = epoch + 1, 0
                # before evaluating: a failed eval loses no training
                ckpt = _save_epoch(state, cfg, run_folder, generator)
                result = _maybe_evaluate(
                    state, cfg, epoch, max_epochs, writer, val_loader, val_dataset, run_folder,
                    device, best, ckpt,
                )  # fmt: skip
                if dist_utils.any_rank(stop.requested, device) and epoch + 1 < max_epochs:
                    hook.interrupt()
        if state.epoch >= max_epochs and result is None and val_loader is not None and main:
            # resumed a finished run
            if best is not None and best.result is not None:
                result = best.report(max_epochs)
            else:
                result = _evaluate_final(state, cfg, val_loader, val_dataset, run_folder, device)
    except FloatingPointError:
        last = run_folder / "last.pth"
        logger.error(
            "training stopped; the last good checkpoint is %s",
            last if last.is_file() else "(none written yet)",
        )
        raise
    finally:
        if writer is not None:
            writer.close()
    return result


def _train_epoch(
    state: TrainState,
    cfg: Config,
    train_loader,
    epoch: int,
    max_epochs: int,
    device,
    writer: Optional[SummaryWriter],
    skip_steps: int,
    resume_rng: Optional[dict],
    hook: _StepHook,
) -> None:
    tic = time.time()
    if skip_steps:
        logger.info("epoch %d: re-reading the batches of %d done steps", epoch + 1, skip_steps)
    means = train_one_epoch(
        state,
        train_loader,
        epoch,
        device,
        clip_grad_l2norm=cfg.train.clip_grad_l2norm,
        print_freq=cfg.opt.print_freq,
        writer=writer,
        accumulate=cfg.opt.accumulate,
        skip_steps=skip_steps,
        resume_rng=resume_rng,
        after_step=hook,
    )
    logger.info(
        "epoch %d/%d done in %.1f s: %s, lr now %.3e",
        epoch + 1,
        max_epochs,
        time.time() - tic,
        " ".join(f"{k} {v:.4f}" for k, v in means.items()),
        state.optimizer.param_groups[0]["lr"],
    )


def _maybe_evaluate(
    state: TrainState,
    cfg: Config,
    epoch: int,
    max_epochs: int,
    writer: Optional[SummaryWriter],
    val_loader,
    val_dataset,
    run_folder: Path,
    device,
    best: Optional[_BestOnVal] = None,
    ckpt: Optional[dict] = None,
):
    """Evaluate the EMA model if this epoch is due; returns the EvalResult or None.

    With `best` (eval.checkpoint=best-on-val, rank 0) every due epoch goes to `best.update` (which
    keeps best.pth from `ckpt`, results.json and metrics.json) and the last epoch returns the
    best epoch's result instead of its own.

    The RNG states are put back afterwards: evaluation (the loader draws a worker seed) then
    never shifts the randomness of later training, so turning intermediate evaluations on or off,
    or resuming, gives the same weights (the reference's eval model rebuild does shift it).
    """
    last = epoch + 1 == max_epochs
    due = cfg.opt.eval_start_epoch >= 0 and epoch >= cfg.opt.eval_start_epoch
    if val_loader is None or not (last or due):
        return None
    if not dist_utils.is_main_process():
        dist_utils.barrier()  # rank 0 evaluates alone
        return None
    rng = capture_rng_state()
    try:
        if best is not None:
            detections, result = _detect_and_score(
                state.ema.module, val_loader, val_dataset, cfg, device, epoch=epoch + 1
            )
            best.update(epoch + 1, ckpt, detections, result, val_dataset, run_folder)
        elif last:
            result = _evaluate_final(state, cfg, val_loader, val_dataset, run_folder, device)
        else:
            _, result = _detect_and_score(state.ema.module, val_loader, val_dataset, cfg, device)
    finally:
        restore_rng_state(rng)
    if writer is not None:
        writer.add_scalar("val/avg_mAP", result.average_mAP, epoch + 1)
    if best is not None and last:
        result = best.report(max_epochs)
    dist_utils.barrier()
    return result


def _evaluate_final(
    state: TrainState, cfg: Config, val_loader, val_dataset, run_folder: Path, device
) -> EvalResult:
    detections, result = _detect_and_score(state.ema.module, val_loader, val_dataset, cfg, device)
    write_eval_files(
        detections, result, val_dataset.id_to_name, run_folder / "results.json",
        run_folder / "metrics.json",
    )  # fmt: skip
    return result
