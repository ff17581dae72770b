"""Evaluation during training: the EMA model on the val split, through `libs.inference`.

Evaluates after every epoch >= `opt.eval_start_epoch` (when >= 0) and always after the last;
the last evaluation writes `results.json` and `metrics.json` into the run folder. With
`eval.checkpoint: best-on-val` the best evaluated epoch is kept as `best.pth` and those files
hold its numbers. Rank 0 evaluates alone; the RNG states are put back afterwards, so turning
evaluations on or off never changes the training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from libs.core.config import Config
from libs.core.structures import Detections
from libs.engine import distributed as dist_utils
from libs.engine.checkpoint import load_checkpoint, save_checkpoint
from libs.evaluation import EvalResult
from libs.inference import collect_raw, score, write_eval_files
from libs.utils.seeding import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)


def detect_and_score(
    model: nn.Module, loader, dataset, cfg: Config, device, epoch: Optional[int] = None
) -> tuple[list[Detections], EvalResult]:
    """`model` over the val loader, then `libs.inference.score` (epoch: 1-based, recorded)."""
    raw = collect_raw(model, loader, id_to_name=dataset.id_to_name, config=cfg, device=device)
    return score(raw, cfg, epoch)


def _write_run_files(detections, result, dataset, run_folder: Path) -> None:
    write_eval_files(
        detections, result, dataset.id_to_name, run_folder / "results.json",
        run_folder / "metrics.json",
    )  # fmt: skip


def evaluate_final(model: nn.Module, cfg: Config, val_loader, val_dataset, run_folder: Path,
                   device) -> EvalResult:  # fmt: skip
    """Evaluate `model` and write the run folder's results.json and metrics.json."""
    detections, result = detect_and_score(model, val_loader, val_dataset, cfg, device)
    _write_run_files(detections, result, val_dataset, run_folder)
    return result


def _result_record(epoch: int, result: EvalResult) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "tiou": list(result.tiou),
        "mAP": list(result.mAP),
        "average_mAP": float(result.average_mAP),
        "ap": np.asarray(result.ap).tolist(),
        "class_names": list(result.class_names),
        "protocol": dict(result.protocol),
    }


def _record_result(record: dict[str, Any]) -> EvalResult:
    return EvalResult(
        tiou=list(record["tiou"]),
        mAP=list(record["mAP"]),
        average_mAP=float(record["average_mAP"]),
        ap=np.asarray(record["ap"], dtype=np.float64),
        class_names=list(record["class_names"]),
        protocol=dict(record["protocol"]),
    )


class BestOnVal:
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
                self.epoch, self.result = record["epoch"], _record_result(record)
                logger.info("best-on-val so far: epoch %d (from %s)", self.epoch, self.path)

    def update(self, epoch: int, ckpt, detections, result, dataset, run_folder: Path) -> None:
        if self.result is not None and result.average_mAP <= self.result.average_mAP:
            return
        self.epoch, self.result = epoch, result
        save_checkpoint(self.path, {**ckpt, "best_on_val": _result_record(epoch, result)})
        _write_run_files(detections, result, dataset, run_folder)
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


def maybe_evaluate(
    model: nn.Module,
    cfg: Config,
    epoch: int,
    max_epochs: int,
    writer: Optional[SummaryWriter],
    val_loader,
    val_dataset,
    run_folder: Path,
    device,
    best: Optional[BestOnVal] = None,
    ckpt: Optional[dict] = None,
) -> Optional[EvalResult]:
    """Evaluate `model` (the EMA copy) if epoch `epoch` (0-based) is due; the result or None.

    With `best` (rank 0) every due epoch goes to `best.update` (which keeps best.pth from
    `ckpt`, results.json and metrics.json) and the last epoch returns the best epoch's result.
    The RNG states are put back afterwards: evaluation (the loader draws a worker seed) then
    never shifts the randomness of later training, so turning intermediate evaluations on or
    off, or resuming, gives the same weights (the reference's eval model rebuild does shift it).
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
            detections, result = detect_and_score(
                model, val_loader, val_dataset, cfg, device, epoch=epoch + 1
            )
            best.update(epoch + 1, ckpt, detections, result, val_dataset, run_folder)
        elif last:
            result = evaluate_final(model, cfg, val_loader, val_dataset, run_folder, device)
        else:
            _, result = detect_and_score(model, val_loader, val_dataset, cfg, device)
    finally:
        restore_rng_state(rng)
    if writer is not None:
        writer.add_scalar("val/avg_mAP", result.average_mAP, epoch + 1)
    if best is not None and last:
        result = best.report(max_epochs)
    dist_utils.barrier()
    return result
