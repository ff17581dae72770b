"""Checks of the training data set-up made before the run folder exists (train.py).

- `check_batches`: at least one optimizer step per epoch (the loader drops the last incomplete
  batch, as the published code does), else an error saying how to fix it;
- `warn_setup`: warnings for set-ups that train but give numbers that mean little: a
  class-agnostic model (num_classes 1) evaluated against a multi-class ground truth without
  external class scores, and training splits that include the evaluation split.
"""

from __future__ import annotations

import logging

from libs.core.config import Config

logger = logging.getLogger(__name__)


def check_batches(cfg: Config, num_train_videos: int) -> None:
    """Raise ValueError when the training split cannot fill one batch of loader.batch_size."""
    if num_train_videos < cfg.loader.batch_size:
        raise ValueError(
            f"the training split {list(cfg.dataset.train_split)} has {num_train_videos} videos, "
            f"fewer than loader.batch_size {cfg.loader.batch_size}: no batch per epoch (the last "
            "incomplete batch is dropped, as in the published code); set loader.batch_size to "
            f"at most {max(num_train_videos, 1)}")


def warn_setup(cfg: Config, val_classes: int) -> None:
    """Warn about a class-agnostic model scored against classes, and train/val overlap."""
    d = cfg.dataset
    if d.num_classes == 1 and val_classes > 1 and not cfg.test.ext_score_file:
        logger.warning(
            "dataset.num_classes is 1 (class-agnostic) but the annotations have %d classes and "
            "no test.ext_score_file gives class scores: every detection gets the first class, so "
            "the mAP against the %d-class ground truth means little; set test.ext_score_file "
            "(as the ActivityNet configs do) or dataset.num_classes %d", val_classes, val_classes,
            val_classes)
    overlap = {s.lower() for s in d.train_split} & {s.lower() for s in d.val_split}
    if overlap:
        logger.warning(
            "dataset.train_split %s includes the evaluation split %s (%s): the model trains on "
            "the videos it is evaluated on", list(d.train_split), list(d.val_split),
            ", ".join(sorted(overlap)))
