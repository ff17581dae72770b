"""Training and evaluation loops (reference-spec §6.5-6.6, house style §2.8), no hooks framework.

One training iteration: zero_grad → losses = model(batch) → loss = sum(losses) + finite check →
backward → clip → optimizer.step → scheduler.step → EMA update. Evaluation always runs on the
EMA copy (`ema.module`). Checkpoints: `last.pth` every epoch, `epoch_NNN.pth` every
`opt.ckpt_freq` epochs, both written atomically into the run folder.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from libs.core.config import Config, config_to_dict
from libs.core.structures import Detections
from libs.engine.checkpoint import load_checkpoint, load_weights, save_checkpoint, strip_prefix
from libs.engine.ema import ModelEma
from libs.engine.optim import build_optimizer
from libs.engine.scheduler import build_scheduler, total_epochs
from libs.evaluation import DetectionMAP, detections_to_results
from libs.postprocessing import postprocess
from libs.utils.io import atomic_write_json
from libs.utils.seeding import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)

_RESUME_KEYS = ("model", "model_ema", "optimizer", "scheduler", "epoch", "iteration", "rng")


@dataclass
class TrainState:
    """Everything a resumed run must get back, besides the RNG states."""

    model: nn.Module
    ema: ModelEma
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0  # completed epochs = 0-based index of the next epoch
    iteration: int = 0  # optimizer steps done


def _progress(iterable, desc: str, total: Optional[int] = None):
    """A tqdm bar on interactive terminals only; log files and CI get the periodic log lines."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        leave=False,
        dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )


def _check_finite(loss: Tensor, losses: dict[str, Tensor], epoch: int, iter_idx: int) -> None:
    # one host sync per iteration: a NaN step would otherwise poison the weights and the EMA
    if not bool(torch.isfinite(loss)):
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        raise FloatingPointError(
            f"non-finite training loss at epoch {epoch + 1} iteration {iter_idx} ({terms}); "
            "try a lower opt.learning_rate or set train.clip_grad_l2norm > 0"
        )


def train_step(
    state: TrainState, batch, clip_grad_l2norm: float, epoch: int, iter_idx: int
) -> dict[str, Tensor]:
    """One optimisation step; returns the detached loss terms plus `final_loss` (no host sync)."""
    model, optimizer = state.model, state.optimizer
    optimizer.zero_grad(set_to_none=True)
    losses = model(batch)  # already weighted terms, e.g. cls_loss, reg_loss
    loss = sum(losses.values())
    _check_finite(loss, losses, epoch, iter_idx)
    loss.backward()
    if clip_grad_l2norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_l2norm)
    optimizer.step()
    state.scheduler.step()
    state.ema.update(model)
    state.iteration += 1
    out = {k: v.detach() for k, v in losses.items()}
    out["final_loss"] = loss.detach()
    return out


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
) -> dict[str, float]:
    """Train one pass over `loader` (`epoch` is 0-based; logs show it 1-based, like checkpoints).

    Logs to the console and TensorBoard at iterations `i != 0` with `i % print_freq == 0`
    (global step `epoch * len(loader) + i`, as in the reference); the logged learning rate is
    the one the optimizer step of that iteration used.

    Returns:
        Mean of every loss term over the epoch (floats).
    """
    state.model.train()
    num_iters = len(loader)
    sums: dict[str, Tensor] = {}
    tic, count = time.time(), 0
    bar = _progress(loader, f"epoch {epoch + 1}", num_iters)
    with logging_redirect_tqdm() if not bar.disable else nullcontext():
        for iter_idx, batch in enumerate(bar):
            lr = state.optimizer.param_groups[0]["lr"]
            values = train_step(state, batch.to(device), clip_grad_l2norm, epoch, iter_idx)
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
                    num_iters,
                    epoch * num_iters + iter_idx,
                    (time.time() - tic) / count,
                )
    return {k: v.item() / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def predict(
    model: nn.Module, loader, cfg: Config, device: Union[str, torch.device, None] = None
) -> list[Detections]:
    """Post-processed detections (seconds) of every video in `loader`, model in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    detections: list[Detections] = []
    try:
        for batch in _progress(loader, "eval"):
            raw = model(batch.to(device))  # list[Detections], grid units, pre-NMS
            raw = [
                Detections(d.video_id, d.segments.cpu(), d.scores.cpu(), d.labels.cpu(), d.unit)
                for d in raw
            ]
            # NMS runs on CPU in postprocess: the candidates are few after the per-level top-k
            detections.extend(postprocess(raw, batch.samples, cfg.test))
    finally:
        model.train(was_training)
    return detections


def evaluate(
    model: nn.Module,
    loader,
    dataset,
    cfg: Config,
    results_path: Optional[Union[str, Path]] = None,
    metrics_path: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device, None] = None,
):
    """Detect on every video of `dataset` and compute the ActivityNet-style mAP.

    Args:
        model: the detector to evaluate (pass `ema.module` during training).
        loader: evaluation loader of `dataset` (one video per step).
        dataset: provides `json_file`, `split` and `id_to_name`.
        cfg: the run config (`test` for post-processing, `dataset.tiou_thresholds`).
        results_path: if set, the detections are written there (ActivityNet results JSON).
        metrics_path: if set, `EvalResult.to_json()` is written there.

    Returns:
        The evaluator's `EvalResult`. Both files are written atomically.
    """
    tic = time.time()
    detections = predict(model, loader, cfg, device)
    result = DetectionMAP(dataset.json_file, dataset.split, cfg.dataset.tiou_thresholds).evaluate(
        detections
    )
    per_tiou = " ".join(f"{t:.2f}:{m:.4f}" for t, m in zip(result.tiou, result.mAP))
    logger.info(
        "evaluated %d videos in %.1f s: average mAP %.4f (per tIoU %s)",
        len(detections),
        time.time() - tic,
        result.average_mAP,
        per_tiou,
    )
    if results_path is not None:
        atomic_write_json(results_path, detections_to_results(detections, dataset.id_to_name))
        logger.info("detections written to %s", results_path)
    if metrics_path is not None:
        atomic_write_json(metrics_path, result.to_json())
        logger.info("metrics written to %s", metrics_path)
    return result


def checkpoint_state(
    state: TrainState, cfg: Config, generator: Optional[torch.Generator]
) -> dict[str, Any]:
    """The dict saved as `last.pth` / `epoch_NNN.pth` (layout in libs/engine/checkpoint.py)."""
    normalizer = getattr(state.model, "loss_normalizer", None)
    return {
        "model": state.model.state_dict(),
        "model_ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "epoch": state.epoch,
        "iteration": state.iteration,
        "loss_normalizer": None if normalizer is None else float(normalizer),
        "config": config_to_dict(cfg),
        "rng": capture_rng_state(generator),
    }


def restore_training_state(
    path: Union[str, Path],
    state: TrainState,
    cfg: Config,
    generator: Optional[torch.Generator] = None,
) -> None:
    """Load a checkpoint written by `train` into `state` (weights, EMA, optimizer, scheduler,
    counters, loss normaliser) and restore every RNG, so training continues as if never stopped.

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
    state.epoch, state.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
    if ckpt.get("loss_normalizer") is not None and hasattr(state.model, "loss_normalizer"):
        state.model.loss_normalizer = float(ckpt["loss_normalizer"])
    restore_rng_state(ckpt["rng"], generator)
    _warn_config_drift(ckpt.get("config"), cfg, path)
    logger.info(
        "resumed from %s: %d epochs / %d iterations done", path, state.epoch, state.iteration
    )


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


def _save_epoch(
    state: TrainState, cfg: Config, run_folder: Path, generator: Optional[torch.Generator]
) -> None:
    ckpt = checkpoint_state(state, cfg, generator)
    save_checkpoint(run_folder / "last.pth", ckpt)
    if cfg.opt.ckpt_freq > 0 and state.epoch % cfg.opt.ckpt_freq == 0:
        save_checkpoint(run_folder / f"epoch_{state.epoch:03d}.pth", ckpt)


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
    the run folder. TensorBoard scalars go to `run_folder/logs`.

    Args:
        generator: the training loader's generator (from `fix_random_seed`); its state is saved
            in checkpoints so a resumed run shuffles exactly like an uninterrupted one.
        resume: a `last.pth` / `epoch_NNN.pth` written by this function.

    Returns:
        The final `EvalResult`, or None when no validation loader is given.
    """
    run_folder = Path(run_folder)
    optimizer = build_optimizer(model, cfg.opt)
    scheduler = build_scheduler(optimizer, cfg.opt, len(train_loader))
    state = TrainState(model, ModelEma(model, cfg.opt.ema_decay), optimizer, scheduler)
    if resume is not None:
        restore_training_state(resume, state, cfg, generator)
    max_epochs = total_epochs(cfg.opt)
    logger.info(
        "training %d epochs x %d iterations from epoch %d; run folder %s",
        max_epochs,
        len(train_loader),
        state.epoch,
        run_folder,
    )
    writer = SummaryWriter(str(run_folder / "logs"))
    result = None
    try:
        for epoch in range(state.epoch, max_epochs):
            _train_epoch(state, cfg, train_loader, epoch, max_epochs, device, writer)
            state.epoch = epoch + 1
            _save_epoch(
                state, cfg, run_folder, generator
            )  # before evaluating: a failed eval loses no training
            result = _maybe_evaluate(
                state, cfg, epoch, max_epochs, writer, val_loader, val_dataset, run_folder, device
            )
        if (
            state.epoch >= max_epochs and result is None and val_loader is not None
        ):  # resumed a finished run
            result = _evaluate_final(state, cfg, val_loader, val_dataset, run_folder, device)
    finally:
        writer.close()
    return result


def _train_epoch(
    state: TrainState,
    cfg: Config,
    train_loader,
    epoch: int,
    max_epochs: int,
    device,
    writer: SummaryWriter,
) -> None:
    tic = time.time()
    means = train_one_epoch(
        state,
        train_loader,
        epoch,
        device,
        clip_grad_l2norm=cfg.train.clip_grad_l2norm,
        print_freq=cfg.opt.print_freq,
        writer=writer,
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
    writer: SummaryWriter,
    val_loader,
    val_dataset,
    run_folder: Path,
    device,
):
    """Evaluate the EMA model if this epoch is due; returns the EvalResult or None.

    The RNG states are put back afterwards: evaluation (the loader draws a worker seed) then
    never shifts the randomness of later training, so turning intermediate evaluations on or off,
    or resuming, gives the same weights (the reference's eval model rebuild does shift it).
    """
    last = epoch + 1 == max_epochs
    due = cfg.opt.eval_start_epoch >= 0 and epoch >= cfg.opt.eval_start_epoch
    if val_loader is None or not (last or due):
        return None
    rng = capture_rng_state()
    try:
        if last:
            result = _evaluate_final(state, cfg, val_loader, val_dataset, run_folder, device)
        else:
            result = evaluate(state.ema.module, val_loader, val_dataset, cfg, device=device)
    finally:
        restore_rng_state(rng)
    writer.add_scalar("val/avg_mAP", result.average_mAP, epoch + 1)
    return result


def _evaluate_final(
    state: TrainState, cfg: Config, val_loader, val_dataset, run_folder: Path, device
):
    return evaluate(
        state.ema.module,
        val_loader,
        val_dataset,
        cfg,
        results_path=run_folder / "results.json",
        metrics_path=run_folder / "metrics.json",
        device=device,
    )
