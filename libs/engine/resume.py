"""Training checkpoints: what `train` saves after steps and epochs, and exact resume from them.

A checkpoint (layout in libs/engine/checkpoint.py) holds weights (with the detector's loss
normaliser buffer), EMA, optimizer, scheduler, GradScaler, counters and every RNG state, so a
run killed at any point and resumed from `last.pth` ends with the same weights, bit for bit,
as an uninterrupted one on CPU (CUDA adds the usual non-deterministic kernels).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from libs.core.config import Config, config_to_dict
from libs.engine import distributed as dist_utils
from libs.engine.checkpoint import load_checkpoint, load_weights, save_checkpoint_many, strip_prefix
from libs.engine.checkpoint_schema import CheckpointError, check_training_checkpoint
from libs.engine.stored_config import diff_configs
from libs.engine.train_step import TrainState
from libs.utils.seeding import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)

def checkpoint_state(
    state: TrainState, cfg: Config, generator: Optional[torch.Generator]
) -> dict[str, Any]:
    """The dict saved as `last.pth` / `epoch_NNN.pth` / `iter_*.pth` (see checkpoint.py).

    Under torchrun every rank must call it (the RNG states are gathered on rank 0); the returned
    dict is only complete on rank 0.
    """
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
        "config": config_to_dict(cfg),
        "rng": rng,
        "rng_per_rank": dist_utils.gather_objects(rng),
    }


def write_checkpoint(
    state: TrainState,
    cfg: Config,
    run_folder: Path,
    generator: Optional[torch.Generator],
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """Write one checkpoint under `names` (rank 0), then as `last.pth`; all ranks must call.

    Returns:
        The saved dict (complete on rank 0 only).
    """
    ckpt = checkpoint_state(state, cfg, generator)
    if dist_utils.is_main_process():
        save_checkpoint_many([run_folder / n for n in names] + [run_folder / "last.pth"], ckpt)
    return ckpt


def restore_training_state(
    path: Union[str, Path],
    state: TrainState,
    cfg: Config,
    generator: Optional[torch.Generator] = None,
) -> dict[str, Any]:
    """Load a checkpoint written by `train` into `state` (weights with the loss normaliser, EMA,
    optimizer, scheduler, GradScaler, counters) and restore every RNG, so training continues as
    if never stopped.

    Returns:
        The RNG states restored on this rank (a mid-epoch resume restores them again after
        replaying the finished batches).

    Raises:
        ValueError: the file is not one of our training checkpoints, or does not fit the model.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    check_training_checkpoint(ckpt, path)
    load_weights(state.model, strip_prefix(ckpt["model"]), source=str(path))
    load_weights(state.ema.module, strip_prefix(ckpt["model_ema"]), source=f"{path} (EMA)")
    _restore_old_normalizer(ckpt, state.model)
    _load_part(state.optimizer, ckpt, "optimizer", path)
    _load_part(state.scheduler, ckpt, "scheduler", path)
    if state.scaler is not None and ckpt.get("grad_scaler") is not None:
        _load_part(state.scaler, ckpt, "grad_scaler", path)
    state.epoch, state.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
    state.epoch_iter = int(ckpt.get("epoch_iter", 0))
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


def _load_part(target: Any, ckpt: dict[str, Any], key: str, path) -> None:
    """`target.load_state_dict(ckpt[key])`, a mismatch reported as one error naming file and key."""
    try:
        target.load_state_dict(ckpt[key])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: key '{key}' does not fit this run's {key} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "a damaged file, or one of another run"
        ) from None


def _restore_old_normalizer(ckpt: dict[str, Any], model: torch.nn.Module) -> None:
    """Checkpoints written before the normaliser became a buffer keep it as a top-level float."""
    norm = getattr(model, "loss_normalizer", None)
    saved = ckpt.get("loss_normalizer")
    if norm is not None and saved is not None and "loss_normalizer" not in ckpt["model"]:
        norm.fill_(float(saved))


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
    """Resume may change the safe keys of libs/engine/stored_config.py (e.g. more epochs): log it."""
    if not isinstance(saved, dict):
        return
    diffs = diff_configs(saved, config_to_dict(cfg))
    if diffs:
        logger.warning(
            "config differs from the one stored in %s: %s",
            path, "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diffs.items()),
        )  # fmt: skip
