"""Training machinery: optimizer groups, LR schedule, model EMA, checkpoints, run folders, loops.

    train_step.py   TrainState, train_step (forward, loss, backward, clip, step, EMA)
    train_loop.py   train, train_one_epoch (epochs, logging, checkpoint cadence, signals)
    resume.py       checkpoint_state / restore_training_state (exact resume, RNG states)
    validation.py   evaluation during training (through libs.inference), best.pth, metrics.json
    val_history.py  the run's val_history.jsonl
    signals.py      Ctrl-C / SIGTERM -> checkpoint and TrainingInterrupted

The loops are not imported here because they pull in the data/evaluation stack, while the
pieces below only need torch and are used on their own (tests, notebooks).
"""

from libs.engine.checkpoint import (
    extract_weights,
    load_checkpoint,
    load_model_weights,
    load_weights,
    save_checkpoint,
    strip_prefix,
)
from libs.engine.ema import ModelEma
from libs.engine.optim import build_optimizer, param_groups, split_decay_names
from libs.engine.run_folder import make_run_folder, run_folder_path
from libs.engine.scheduler import WarmupScheduler, build_scheduler, total_epochs

__all__ = [
    "ModelEma",
    "WarmupScheduler",
    "build_optimizer",
    "build_scheduler",
    "extract_weights",
    "load_checkpoint",
    "load_model_weights",
    "load_weights",
    "make_run_folder",
    "param_groups",
    "run_folder_path",
    "save_checkpoint",
    "split_decay_names",
    "strip_prefix",
    "total_epochs",
]
