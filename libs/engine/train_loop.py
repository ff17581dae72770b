"""The training loop (reference-spec §6.5-6.6, house style §2.8): epochs of `train_step`s with
logging, progress, checkpoint cadence, Ctrl-C handling and validation; no hooks framework.

    train.py → train(cfg, model, train_loader, run_folder, ...)
        per epoch: re-seed the loader → train_one_epoch (train_step.py; after each step: stop
        request? iteration checkpoint?) → epoch checkpoint (resume.py) → validation
        (validation.py, the EMA model through libs.inference)

Checkpoints (layout in libs/engine/checkpoint.py), written atomically by rank 0:
- `last.pth`: the newest checkpoint, whatever its kind; `--resume RUN/last.pth` continues there;
- `epoch_NNN.pth` every `opt.ckpt_freq` epochs;
- `iter_NNNNNNN.pth` every `opt.ckpt_every_iters` optimizer steps inside an epoch, of which the
  newest `opt.keep_last` are kept;
- on Ctrl-C / SIGTERM, `last.pth` at the end of the current step, then `TrainingInterrupted`.

Exact resume: each epoch re-seeds the loader (generator and `sampler.set_epoch`) from (seed,
epoch, rank) alone, so a resumed epoch replays the same batches; a mid-epoch resume re-reads the
epoch's finished batches without running the model, then puts the RNG states back to the
checkpoint's. With `loader.num_workers > 0` the training workers are not persistent, so each
epoch's workers are seeded from that epoch's generator and the replay is exact too.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from libs.core.config import Config, describe_schedule
from libs.engine import distributed as dist_utils
from libs.engine.amp import make_grad_scaler
from libs.engine.checkpoint import iteration_checkpoint_name, prune_iteration_checkpoints
from libs.engine.ema import ModelEma
from libs.engine.optim import build_optimizer
from libs.engine.resume import restore_training_state, write_checkpoint
from libs.engine.scheduler import build_scheduler, total_epochs
from libs.engine.signals import NothingToTrain, StopRequest, TrainingInterrupted, resume_command
from libs.engine.train_step import TrainState, train_step
from libs.engine.validation import Validator, check_validation_settings
from libs.evaluation import EvalResult
from libs.utils.seeding import derive_seed, restore_rng_state

logger = logging.getLogger(__name__)

__all__ = ["TrainState", "TrainingInterrupted", "train", "train_one_epoch", "train_step"]


@dataclass
class RunContext:
    """What the epoch loop needs besides the TrainState: config, outputs, stop flag."""

    cfg: Config
    run_folder: Path
    device: torch.device
    generator: Optional[torch.Generator]  # the training loader's, re-seeded every epoch
    stop: StopRequest
    writer: Optional[SummaryWriter]  # TensorBoard, rank 0 only
    steps_per_epoch: int
    max_epochs: int


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


def _log_iteration(
    run: RunContext, values: dict[str, Tensor], lr: float, epoch: int, iter_idx: int, tic: float,
    count: int,
) -> None:  # fmt: skip
    """Console line + TensorBoard scalars at global step `epoch * steps + iter_idx` (reference)."""
    floats = {k: v.item() for k, v in values.items()}  # the only host syncs of the loop
    terms = " ".join(f"{k} {v:.4f}" for k, v in floats.items() if k != "final_loss")
    logger.info(
        "epoch %d [%d/%d] lr %.3e loss %.4f (%s) %.3f s/it",
        epoch + 1, iter_idx, run.steps_per_epoch, lr, floats["final_loss"], terms,
        (time.time() - tic) / count,
    )  # fmt: skip
    if run.writer is not None:
        global_step = epoch * run.steps_per_epoch + iter_idx
        run.writer.add_scalar("train/learning_rate", lr, global_step)
        for key, value in floats.items():
            run.writer.add_scalar(f"train/{key}", value, global_step)


def train_one_epoch(
    state: TrainState,
    loader,
    epoch: int,
    run: RunContext,
    skip_steps: int = 0,
    resume_rng: Optional[dict] = None,
) -> dict[str, float]:
    """Train one pass over `loader` (`epoch` is 0-based; logs show it 1-based, like checkpoints).

    An epoch has `len(loader) // opt.accumulate` optimizer steps; leftover micro-batches are
    dropped. Logs at steps `i != 0` with `i % opt.print_freq == 0`, and at the last step of an
    epoch shorter than that (so every epoch reaches TensorBoard); the logged learning rate is
    the one the optimizer step of that iteration used. After every step: `_after_step`.

    Args:
        skip_steps: steps of this epoch already done (mid-epoch resume): their batches are read
            and dropped, which replays the loader's randomness, then `resume_rng` (the
            checkpoint's RNG states) is restored.
    Returns:
        Mean of every loss term over the steps run here (floats).
    """
    opt = run.cfg.opt
    state.model.train()
    batches = iter(loader)
    for _ in range(skip_steps * opt.accumulate):
        next(batches)
    if resume_rng is not None:
        restore_rng_state(resume_rng)
    sums: dict[str, Tensor] = {}
    tic, count, steps = time.time(), 0, run.steps_per_epoch
    bar = _progress(range(skip_steps, steps), f"epoch {epoch + 1}", steps - skip_steps)
    with logging_redirect_tqdm() if not bar.disable else nullcontext():
        for iter_idx in bar:
            micro = [next(batches).to(run.device) for _ in range(opt.accumulate)]
            lr = state.optimizer.param_groups[0]["lr"]
            values = train_step(state, micro, run.cfg.train.clip_grad_l2norm, epoch, iter_idx)
            state.epoch_iter = iter_idx + 1
            for key, value in values.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            count += 1
            if _log_due(iter_idx, steps, opt.print_freq):
                _log_iteration(run, values, lr, epoch, iter_idx, tic, count)
            _after_step(state, run)
    return {k: v.item() / max(count, 1) for k, v in sums.items()}


def _log_due(iter_idx: int, steps: int, print_freq: int) -> bool:
    """Log step `iter_idx` of `steps`: every print_freq-th, or the last one if none was due."""
    if print_freq <= 0:
        return False
    return (iter_idx != 0 and iter_idx % print_freq == 0) or (
        iter_idx == steps - 1 and steps - 1 < print_freq)


def _after_step(state: TrainState, run: RunContext) -> None:
    """Stop on Ctrl-C / SIGTERM (any rank), and write the mid-epoch iteration checkpoints."""
    every = run.cfg.opt.ckpt_every_iters
    if dist_utils.any_rank(run.stop.requested, run.device):
        _interrupt(state, run)
    if every > 0 and state.iteration % every == 0 and state.epoch_iter < run.steps_per_epoch:
        name = iteration_checkpoint_name(state.iteration)
        write_checkpoint(state, run.cfg, run.run_folder, run.generator, [name])
        if dist_utils.is_main_process():
            prune_iteration_checkpoints(run.run_folder, run.cfg.opt.keep_last)


def _interrupt(state: TrainState, run: RunContext) -> None:
    write_checkpoint(state, run.cfg, run.run_folder, run.generator)
    last = run.run_folder / "last.pth"
    raise TrainingInterrupted(
        f"training interrupted at epoch {state.epoch + 1} after {state.epoch_iter} of its "
        f"{run.steps_per_epoch} iterations ({state.iteration} in all); checkpoint {last}; "
        f"resume with: {resume_command(last)}",
        last,
    )


def _seed_epoch(loader, generator: Optional[torch.Generator], seed: int, epoch: int) -> None:
    """Make the epoch's shuffling and worker seeds a function of (seed, epoch, rank) only."""
    if generator is not None:
        generator.manual_seed(derive_seed(seed, "loader", epoch, dist_utils.get_rank()))
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _build_state(cfg: Config, model: nn.Module, steps_per_epoch: int, device) -> TrainState:
    optimizer = build_optimizer(model, cfg.opt)
    scheduler = build_scheduler(optimizer, cfg.opt, steps_per_epoch)
    wrapped = dist_utils.wrap_model(model)  # before the EMA copy: DDP broadcasts rank 0's init
    state = TrainState(model, ModelEma(model, cfg.opt.ema_decay), optimizer, scheduler)
    state.wrapped, state.amp = wrapped if wrapped is not model else None, cfg.opt.amp
    state.scaler = make_grad_scaler(cfg.opt.amp, device)
    return state


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
) -> Optional[EvalResult]:
    """Train `model` (on `device`) for `total_epochs(cfg.opt)` epochs, validating on `val_loader`
    as libs/engine/validation.py says; TensorBoard scalars go to `run_folder/logs`. Under
    torchrun the model is wrapped in DDP; rank 0 alone logs, checkpoints and evaluates.

    Args:
        train_loader: yields micro-batches (`loader.batch_size / (world * opt.accumulate)`).
        generator: the training loader's generator (from `fix_random_seed`; default the loader's
            own); it is re-seeded every epoch so a resumed run shuffles exactly like the
            uninterrupted one.
        resume: a checkpoint written by this function (`last.pth`, `epoch_NNN.pth`, `iter_*`).
    Returns:
        The reported (eval.checkpoint) `EvalResult` on rank 0, else None (or no val loader).
    Raises:
        TrainingInterrupted: after Ctrl-C / SIGTERM, once `last.pth` is written.
        FloatingPointError: non-finite loss; no checkpoint is written, the last one stays.
    """
    run_folder, device = Path(run_folder), torch.device(device)
    generator = generator if generator is not None else getattr(train_loader, "generator", None)
    steps_per_epoch = len(train_loader) // cfg.opt.accumulate
    if val_loader is not None:
        check_validation_settings(cfg)
    state = _build_state(cfg, model, steps_per_epoch, device)
    resume_rng = restore_training_state(resume, state, cfg, generator) if resume else None
    max_epochs = total_epochs(cfg.opt)
    logger.info(
        "training %s x %d iterations (x %d micro-batches, %d process(es), amp %s) "
        "from epoch %d; run folder %s", describe_schedule(cfg), steps_per_epoch, cfg.opt.accumulate,
        dist_utils.get_world_size(), cfg.opt.amp, state.epoch + 1, run_folder,
    )  # fmt: skip
    writer = SummaryWriter(str(run_folder / "logs")) if dist_utils.is_main_process() else None
    try:
        with StopRequest() as stop:
            run = RunContext(
                cfg, run_folder, device, generator, stop, writer, steps_per_epoch, max_epochs
            )
            validator = _start_validation(state, run, val_loader, val_dataset, resume)
            _check_work_left(state, run, validator, resume)
            return _run_epochs(state, run, train_loader, validator, resume_rng)
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


def _check_work_left(state: TrainState, run: RunContext, validator, resume) -> None:
    """A resume with no epoch left (and no evaluation a kill cut short) is an error."""
    if resume and state.epoch >= run.max_epochs and not getattr(validator, "caught_up", False):
        raise NothingToTrain(_nothing_left(run.cfg, Path(resume), state.epoch))


def _nothing_left(cfg: Config, checkpoint: Path, done: int) -> str:
    """Why a resume has no work, and the two commands that do have some."""
    stored = checkpoint.parent / "config.yaml"
    config = stored if stored.is_file() else (cfg.config_path or "CONFIG")
    return (
        f"nothing left to train: {checkpoint} has finished {done} epoch(s) and the config asks "
        f"for {describe_schedule(cfg)}. To train longer: {resume_command(checkpoint)} --opts "
        f"opt.epochs=N (N > {cfg.opt.epochs}); to evaluate it: python eval.py {config} {checkpoint}"
    )


def _start_validation(
    state: TrainState, run: RunContext, val_loader, val_dataset, resume
) -> Optional[Validator]:
    """The run's Validator (None without a val loader), after any evaluation a kill cut short."""
    if val_loader is None:
        return None
    validator = Validator(run.cfg, run.run_folder, val_loader, val_dataset, run.device,
                          run.writer, state.epoch)  # fmt: skip
    validator.catch_up(state.ema.module, state.epoch, state.epoch_iter, state.iteration,
                       Path(resume) if resume else None)  # fmt: skip
    return validator


def _run_epochs(
    state: TrainState, run: RunContext, train_loader, validator: Optional[Validator],
    resume_rng: Optional[dict],
) -> Optional[EvalResult]:  # fmt: skip
    """Epochs from `state.epoch` to the end: train, checkpoint, validate; the reported result."""
    cfg = run.cfg
    for epoch in range(state.epoch, run.max_epochs):
        _seed_epoch(train_loader, run.generator, cfg.seed, epoch)
        skip = min(state.epoch_iter, run.steps_per_epoch) if epoch == state.epoch else 0
        _train_epoch(state, run, train_loader, epoch, skip, resume_rng if skip else None)
        state.epoch, state.epoch_iter = epoch + 1, 0
        # before evaluating: a failed or killed evaluation loses no training
        names = [f"epoch_{state.epoch:03d}.pth"] if _epoch_file_due(cfg, state.epoch) else []
        ckpt = write_checkpoint(state, cfg, run.run_folder, run.generator, names)
        if validator is not None:
            validator.after_epoch(state.ema.module, epoch, state.iteration, ckpt)
        if dist_utils.any_rank(run.stop.requested, run.device) and epoch + 1 < run.max_epochs:
            _interrupt(state, run)
    return validator.finish() if validator is not None else None


def _epoch_file_due(cfg: Config, epochs_done: int) -> bool:
    return cfg.opt.ckpt_freq > 0 and epochs_done % cfg.opt.ckpt_freq == 0


def _train_epoch(
    state: TrainState, run: RunContext, train_loader, epoch: int, skip_steps: int,
    resume_rng: Optional[dict],
) -> None:  # fmt: skip
    tic = time.time()
    if skip_steps:
        logger.info("epoch %d: re-reading the batches of %d done steps", epoch + 1, skip_steps)
    means = train_one_epoch(state, train_loader, epoch, run, skip_steps, resume_rng)
    logger.info(
        "epoch %d/%d done in %.1f s: %s, lr now %.3e",
        epoch + 1,
        run.max_epochs,
        time.time() - tic,
        " ".join(f"{k} {v:.4f}" for k, v in means.items()),
        state.optimizer.param_groups[0]["lr"],
    )
