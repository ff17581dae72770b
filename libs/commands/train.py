"""Train a temporal action detector, evaluate its EMA weights, keep everything in one run folder.

    python train.py CONFIG [--name NAME] [--opts key=value ...] [--resume CKPT] [--overwrite]
                           [--device cpu|cuda]
    torchrun --nproc_per_node N train.py CONFIG ...     # data parallel (DDP) over N processes

The run folder is `<output_folder>/<config name>_<NAME or timestamp>` (a suffix `_1`, `_2`, ...
is added instead of reusing an existing one, unless --overwrite). It receives config.yaml,
log.txt, logs/ (TensorBoard), last.pth, epoch_NNN.pth, and at the end results.json and
metrics.json. `--resume RUN/last.pth` (or `--resume RUN`) continues that run in its folder from
its newest checkpoint, mid-epoch included. Ctrl-C writes last.pth and exits with status 130.
`loader.batch_size` is the global batch under torchrun and with `opt.accumulate` (see
libs/engine/distributed.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DistributedSampler

import libs.ops
from libs.cli import (
    add_deprecated_alias, add_device_arg, add_opts_arg, add_threads_arg, pick_device, run_cli,
)
from libs.core.config import Config, load_config
from libs.datasets import build_dataset, build_loader
from libs.engine import distributed as dist_utils
from libs.engine.checkpoint import resolve_checkpoint
from libs.engine.run_folder import make_run_folder
from libs.engine.run_lock import RunLock
from libs.engine.train_loop import TrainingInterrupted, train
from libs.engine.validation import check_validation_settings
from libs.evaluation import format_table
from libs.modeling import build_model
from libs.utils.logging import setup_logging
from libs.utils.seeding import fix_random_seed
from libs.utils.threads import setup_threads

logger = logging.getLogger("train")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a temporal action detector (train + final evaluation)."
    )
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--name", dest="output", default=None,
                        help="run name: the run folder is <output_folder>/<config name>_<NAME> "
                        "(default: a timestamp)")
    parser.add_argument("--per-class", action="store_true",
                        help="also print AP per class after the final evaluation")
    add_opts_arg(parser, "opt.epochs=3 model.block.type=dbm")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue a run from its last.pth / epoch_NNN.pth / iter_*.pth, or a run folder",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run folder of the same name"
    )
    add_device_arg(parser)
    add_threads_arg(parser)
    add_deprecated_alias(parser, "--output", "--name")
    return parser


def prepare_run_folder(cfg: Config, args: argparse.Namespace) -> Path:
    """A new run folder (made by rank 0), or the folder of the checkpoint being resumed.

    Rank 0 holds the folder's lock until exit, also after SIGTERM/Ctrl-C: a second writer is
    refused (libs/engine/run_lock.py). A new folder is locked by `make_run_folder` itself.
    """
    if args.resume is None:
        folder = None
        if dist_utils.is_main_process():
            folder = str(make_run_folder(cfg, args.output, args.overwrite)[0])
        return Path(dist_utils.broadcast_object(folder))
    args.resume = resolve_checkpoint(args.resume, "--resume checkpoint")
    if dist_utils.is_main_process():
        RunLock(args.resume.parent).acquire()
    return args.resume.parent


def build_train_loader(cfg: Config, train_set, generator: torch.Generator, **common):
    """The training loader of this rank: a DistributedSampler shard of the global batch.

    The same sampler is used by a single process (1 shard), so a torchrun job and a plain run
    visit the same global batches in the same order.
    """
    world, rank = dist_utils.get_world_size(), dist_utils.get_rank()
    per_rank = dist_utils.per_rank_batch_size(cfg.loader.batch_size, world, cfg.opt.accumulate)
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    return build_loader(
        train_set,
        batch_size=per_rank,
        is_training=True,
        generator=generator,
        sampler=sampler,
        persistent_workers=False,
        **common,
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.opts)
    check_validation_settings(cfg)  # before any folder, dataset or process group
    device = dist_utils.init_distributed(pick_device(args.device))
    run_folder = prepare_run_folder(cfg, args)
    if dist_utils.is_main_process():
        setup_logging(run_folder)
    else:  # the other ranks only report problems, on the console
        setup_logging(None, level=logging.WARNING)
    if args.resume is not None and args.output is not None:
        logger.warning("--name is ignored with --resume: continuing in %s", run_folder)
    logger.info(
        "config %s (overrides %s) on %s; run folder %s", args.config, args.opts, device, run_folder
    )
    setup_threads(args.threads, cfg.threads)  # before any parallel work
    logger.info("kernels: %s", libs.ops.report())
    # before anything that draws random numbers; ranks differ (crops, dropout) but DDP gives
    # every rank rank 0's initial weights, and rank 0 matches a single-process run
    generator = fix_random_seed(cfg.seed + dist_utils.get_rank())

    train_set = build_dataset(cfg.dataset, "train", is_training=True)
    val_set = build_dataset(cfg.dataset, "val", is_training=False)
    model = build_model(cfg.model, cfg.train, cfg.test).to(device)
    common = dict(
        num_workers=cfg.loader.num_workers,
        max_seq_len=cfg.dataset.max_seq_len,
        size_divisor=model.size_divisor,
    )
    train_loader = build_train_loader(cfg, train_set, generator, **common)
    val_loader = build_loader(val_set, batch_size=1, is_training=False, **common)

    result = train(
        cfg,
        model,
        train_loader,
        run_folder,
        device=device,
        val_loader=val_loader,
        val_dataset=val_set,
        resume=args.resume,
        generator=generator,
    )
    if dist_utils.is_main_process():
        if result is not None:
            print(format_table(result, per_class=args.per_class))
        print(f"run folder: {run_folder}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run_cli(lambda: run(args))
    except FloatingPointError as exc:
        # diverged training: the message names the epoch, the iteration and the loss terms
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        logger.warning("%s", exc)
        if dist_utils.is_main_process():
            print(f"interrupted: {exc}", file=sys.stderr)
        return 130  # the shell's status for SIGINT
    finally:
        dist_utils.shutdown()


if __name__ == "__main__":
    sys.exit(main())
