"""Datasets: ActivityNet-style JSON + per-video features → VideoSample → (collate) → Batch.

    dataset = build_dataset(cfg.dataset, "train", is_training=True)
    loader = build_loader(dataset, batch_size=cfg.loader.batch_size, num_workers=cfg.loader.num_workers,
                          is_training=True, max_seq_len=cfg.dataset.max_seq_len,
                          size_divisor=model.size_divisor, generator=rng)
"""
from __future__ import annotations

import functools
import logging
import os
import random
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from libs.core.config import DatasetCfg
from libs.datasets import activitynet, fineaction, hacs, thumos14  # noqa: F401  (registration side effect)
from libs.datasets.base import DATASETS, ActivityNetFormatDataset
from libs.datasets.collate import collate
from libs.datasets.transforms import truncate_feats
from libs.utils.workers import clamp_workers

__all__ = ["DATASETS", "ActivityNetFormatDataset", "build_dataset", "build_loader", "collate",
           "truncate_feats", "worker_init_reset_seed"]

logger = logging.getLogger(__name__)


def build_dataset(cfg: DatasetCfg, split: str, is_training: bool) -> ActivityNetFormatDataset:
    """Build the registered dataset `cfg.name` for the "train" or "val" subsets of the config.

    Args:
        cfg: the `dataset` section of the config.
        split: "train" (uses cfg.train_split) or "val" (uses cfg.val_split).
        is_training: enables the training crop and the ANet/HACS segment clean-up.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return DATASETS.build(
        cfg.name,
        json_file=cfg.json_file, feat_folder=cfg.feat_folder,
        split=cfg.train_split if split == "train" else cfg.val_split, is_training=is_training,
        feat_stride=cfg.feat_stride, num_frames=cfg.num_frames, input_dim=cfg.input_dim,
        num_classes=cfg.num_classes, default_fps=cfg.default_fps, downsample_rate=cfg.downsample_rate,
        max_seq_len=cfg.max_seq_len, trunc_thresh=cfg.trunc_thresh, crop_ratio=cfg.crop_ratio,
        feat_sampling=cfg.feat_sampling, file_prefix=cfg.file_prefix, feature_type=cfg.feature_type,
        file_ext=cfg.file_ext, ignore_videos=cfg.ignore_videos,
    )


def worker_init_reset_seed(worker_id: int) -> None:
    """Seed numpy and Python `random` of a DataLoader worker from its torch seed (reference).

    torch gives each worker `base_seed + worker_id`, where base_seed comes from the loader's
    generator, so crops are reproducible given the generator and differ across workers.
    """
    seed = torch.initial_seed() % 2**31
    np.random.seed(seed)
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def build_loader(dataset: ActivityNetFormatDataset, *, batch_size: int, num_workers: int, is_training: bool,
                 max_seq_len: int, size_divisor: int, generator: Optional[torch.Generator] = None,
                 sampler: Optional[Sampler] = None, persistent_workers: Optional[bool] = None) -> DataLoader:
    """DataLoader yielding `Batch` objects (padding and masks are made by `collate`).

    Training shuffles and drops the last incomplete batch. Evaluation always loads one video
    per step (the reference inference assumes batch size 1), in order.

    Args:
        sampler: replaces the loader's own shuffling (e.g. the engine's DistributedSampler, which
            shards the data over torchrun ranks and shuffles per epoch).
        persistent_workers: keep worker processes across epochs; default `num_workers > 0`. The
            engine turns it off for training so every epoch's workers are re-seeded, which makes
            a resumed run load exactly the same crops.
    """
    num_workers = clamp_workers(num_workers)
    if not is_training and batch_size != 1:
        logger.info("evaluation loads one video per step; ignoring batch_size=%d", batch_size)
        batch_size = 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=functools.partial(collate, max_seq_len=max_seq_len, size_divisor=size_divisor,
                                     is_training=is_training),
        worker_init_fn=worker_init_reset_seed if is_training else None,
        shuffle=is_training and sampler is None,
        sampler=sampler,
        drop_last=is_training,
        generator=generator,
        persistent_workers=num_workers > 0 and persistent_workers is not False,
    )
