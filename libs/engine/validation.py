"""Validation during training: the EMA model on the val split, through `libs.inference`.

When (house style §2.8; the published code in brackets):
- after every epoch e (0-based) with e >= `opt.eval_start_epoch` >= 0 and
  (e - eval_start_epoch) % `opt.eval_interval` == 0, and always after the last epoch.
  [video-mamba-suite temporal-action-localization/train_eval.py:148 evaluates after every epoch
  >= 5 (0-based); its paper configs here set eval_start_epoch 5, eval_interval 1. ActionFormer's
  train.py does not evaluate; its eval.py evaluates the last checkpoint.]
- always with the EMA weights [train_eval.py:159 loads `model_ema.module.state_dict()`].

What each evaluation leaves in the run folder:
- a line of `val_history.jsonl` (val_history.py), TensorBoard `val/mAP@t` and `val/avg_mAP` at
  the epoch, and the per-tIoU numbers in the text log (libs.inference.score);
- `best.pth` when the epoch is the best so far (highest average mAP, the earlier epoch on ties)
  and validation runs before the last epoch (opt.eval_start_epoch >= 0): that epoch's checkpoint
  plus a `best_on_val` record, written atomically beside `last.pth`;
  [train_eval.py:199-203 keeps every evaluated epoch as epoch_NNN_<mAP>.pth.tar instead]
- `results.json` (detections) for the epoch the run reports, `metrics.json` (below).

`metrics.json` is the reported result (`tiou`, `mAP`, `average_mAP`, `protocol`) plus
`"reported": "last" | "best"` (`eval.checkpoint: last | best-on-val`, default last) and the
`"last"` and `"best"` epochs, each `{"epoch", "tiou", "mAP", "average_mAP"}`.

Evaluation never disturbs training: the RNG states are put back afterwards, so a fixed-seed run
gives the same losses and weights with validation on or off. A run killed during an evaluation
resumes by first running that evaluation again (its checkpoint was written before it started).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Optional

from torch import nn
from torch.utils.tensorboard import SummaryWriter

from libs.core.config import Config, ConfigError
from libs.engine import distributed as dist_utils
from libs.datasets.collate import padded_length
from libs.engine.checkpoint import load_checkpoint, save_checkpoint
from libs.engine.scheduler import total_epochs
from libs.engine.val_history import TIMING_KEYS, ValHistory, make_record, record_result, summary
from libs.evaluation import EvalResult
from libs.evaluation.protocol import ProtocolEvaluator
from libs.inference import collect_raw, score, write_eval_files
from libs.inference.evaluate import build_val_evaluator
from libs.utils.io import atomic_write_json
from libs.utils.seeding import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)


def check_validation_settings(cfg: Config) -> None:
    """One clear error for validation settings that cannot work, before any training.

    Raises:
        ConfigError: opt.eval_interval < 1, opt.eval_start_epoch not in -1 .. epochs - 1, or an
            empty dataset.val_split.
    """
    opt, epochs = cfg.opt, total_epochs(cfg.opt)
    if opt.eval_interval < 1:
        raise ConfigError(
            f"opt.eval_interval must be >= 1 (evaluate every that many epochs from "
            f"opt.eval_start_epoch), got {opt.eval_interval}"
        )
    if not -1 <= opt.eval_start_epoch < epochs:
        raise ConfigError(
            f"opt.eval_start_epoch={opt.eval_start_epoch} is outside this run's {epochs} epochs "
            f"(opt.epochs + opt.warmup_epochs, counted from 0): use 0 .. {epochs - 1}, or -1 to "
            "evaluate only after the last epoch"
        )
    if not cfg.dataset.val_split:
        raise ConfigError(
            "dataset.val_split is empty: training evaluates on it (e.g. [test] for THUMOS-14, "
            "[validation] for ActivityNet)"
        )


def check_val_lengths(cfg: Config, val_set, size_divisor: int) -> None:
    """Before training: every validation video fits the model's point buffer.

    The buffer covers `dataset.max_seq_len * model.max_buffer_len_factor` feature steps; an
    evaluation video is padded to a multiple of `size_divisor`. Lengths are estimated from the
    annotation's duration and fps; only videos estimated near or over the limit are read.

    Raises:
        ConfigError: naming the video, its length, the buffer and the keys to change.
    """
    records = getattr(val_set, "records", ())
    if cfg.dataset.feat_sampling != "variable" or not records:
        return  # resize: every video has max_seq_len features
    max_len, factor = cfg.dataset.max_seq_len, cfg.model.max_buffer_len_factor
    buffer_len = max_len * factor
    stride = cfg.dataset.feat_stride * cfg.dataset.downsample_rate
    for idx, rec in enumerate(records):
        if rec.duration * rec.fps / stride < 0.8 * buffer_len:  # clearly shorter
            continue
        num = val_set[idx].num_feats
        padded = padded_length(num, max_len, size_divisor, is_training=False)
        if padded > buffer_len:
            raise ConfigError(
                f"validation video '{rec.video_id}' has {num} features (padded to {padded}), more "
                f"than the model's point buffer of {buffer_len:g} (dataset.max_seq_len {max_len} x "
                f"model.max_buffer_len_factor {factor:g}): set model.max_buffer_len_factor="
                f"{math.ceil(padded / max_len)}, or add the video to dataset.ignore_videos"
            )


def is_due(cfg: Config, epoch: int) -> bool:
    """Whether the epoch `epoch` (0-based, just finished) is evaluated."""
    start, last = cfg.opt.eval_start_epoch, epoch + 1 == total_epochs(cfg.opt)
    return last or (start >= 0 and epoch >= start and (epoch - start) % cfg.opt.eval_interval == 0)


class Validator:
    """The validation of one training run; every rank holds one, rank 0 alone evaluates.

    Args:
        completed_epochs: epochs done when training (re)starts; the history is cut there.
    """

    def __init__(self, cfg: Config, run_folder: Path, loader, dataset, device,
                 writer: Optional[SummaryWriter], completed_epochs: int):  # fmt: skip
        self.cfg, self.run_folder = cfg, Path(run_folder)
        self.loader, self.dataset, self.device, self.writer = loader, dataset, device, writer
        self.main = dist_utils.is_main_process()
        self.history = ValHistory(run_folder, completed_epochs) if self.main else None
        self.report_best = cfg.eval.checkpoint == "best-on-val"
        self.keep_best = cfg.opt.eval_start_epoch >= 0  # several epochs to choose from
        self.evaluator: Optional[ProtocolEvaluator] = None  # built at the first evaluation
        self.caught_up = False  # catch_up re-ran an evaluation a kill cut short

    def catch_up(self, ema_model: nn.Module, completed_epochs: int, epoch_iter: int, step: int,
                 checkpoint: Optional[Path]) -> None:  # fmt: skip
        """After a resume at an epoch's end: run that epoch's evaluation if it did not finish.

        `ema_model` holds the checkpoint's EMA weights (just restored), i.e. exactly the weights
        the interrupted evaluation was running on. All ranks call this.
        """
        epoch = completed_epochs - 1
        pending = bool(
            self.main and checkpoint is not None and epoch_iter == 0 and epoch >= 0
            and is_due(self.cfg, epoch) and not self.history.has(completed_epochs)
        )  # fmt: skip
        if dist_utils.broadcast_object(pending):
            logger.info("evaluating epoch %d, whose evaluation did not finish", completed_epochs)
            ckpt = load_checkpoint(checkpoint, map_location="cpu") if self.main else None
            self.after_epoch(ema_model, epoch, step, ckpt)
            self.caught_up = True

    def after_epoch(self, model: nn.Module, epoch: int, step: int,
                    ckpt: Optional[dict[str, Any]]) -> None:  # fmt: skip
        """Evaluate `model` (the EMA copy) if epoch `epoch` is due.

        Args:
            epoch: 0-based epoch just finished; step: optimizer steps done;
            ckpt: that epoch's checkpoint dict (complete on rank 0), for best.pth.
        """
        if not is_due(self.cfg, epoch):
            return
        if self.main:
            rng = capture_rng_state()  # evaluation must not shift the training's randomness
            try:
                self._evaluate(model, epoch + 1, step, ckpt)
            finally:
                restore_rng_state(rng)
        dist_utils.barrier()  # the other ranks wait for rank 0

    def _evaluate(self, model: nn.Module, epoch: int, step: int, ckpt) -> None:
        tic = time.time()
        raw = collect_raw(model, self.loader, id_to_name=self.dataset.id_to_name,
                          config=self.cfg, device=self.device)  # fmt: skip
        if self.evaluator is None:  # the ground truth is read once per run, not per evaluation
            self.evaluator = build_val_evaluator(self.cfg)
        detections, result = score(raw, self.cfg, epoch if self.report_best else None, self.evaluator)
        record = make_record(epoch, step, result, time.time() - tic)
        best = self.history.best
        new_best = best is None or record["average_mAP"] > best["average_mAP"]
        if best is not None and record["average_mAP"] == best["average_mAP"]:
            logger.info("epoch %d ties the best average mAP %.4f of epoch %d: on a tie the "
                        "earlier epoch stays best", epoch, best["average_mAP"], best["epoch"])  # fmt: skip
        if new_best and self.keep_best:
            best_record = {k: v for k, v in record.items() if k not in TIMING_KEYS}
            save_checkpoint(self.run_folder / "best.pth", {**ckpt, "best_on_val": best_record})
            logger.info("new best: epoch %d, average mAP %.4f; best.pth written", epoch,
                        result.average_mAP)  # fmt: skip
        last = epoch == total_epochs(self.cfg.opt)
        if (new_best and self.report_best) or (last and not self.report_best):
            write_eval_files(detections, result, self.dataset.id_to_name,
                             self.run_folder / "results.json")  # fmt: skip
        self.history.append(record)  # the commit point of this evaluation
        self._write_metrics()
        if self.writer is not None:
            for t, m in zip(result.tiou, result.mAP):
                self.writer.add_scalar(f"val/mAP@{t:.2f}", m, epoch)
            self.writer.add_scalar("val/avg_mAP", result.average_mAP, epoch)

    def _write_metrics(self) -> None:
        """metrics.json from the history: the reported epoch's result plus last and best."""
        last, best = self.history.last, self.history.best
        reported = best if self.report_best else last
        metrics = {
            **record_result(reported).to_json(),
            "reported": "best" if self.report_best else "last",
            "last": summary(last),
            "best": summary(best),
        }
        atomic_write_json(self.run_folder / "metrics.json", metrics)

    def finish(self) -> Optional[EvalResult]:
        """The result the run reports (rank 0; None elsewhere or without evaluations)."""
        if not self.main or self.history.last is None:
            return None
        if self.report_best:
            best = self.history.best
            logger.info(
                "best-on-val: reporting epoch %d of %d (average mAP %.4f; the earliest epoch on "
                "a tie), weights %s",
                best["epoch"], total_epochs(self.cfg.opt), best["average_mAP"],
                self.run_folder / "best.pth",
            )  # fmt: skip
            return record_result(best)
        return record_result(self.history.last)
