"""Train a temporal action detector, evaluate its EMA weights, keep everything in one run folder.

    python train.py CONFIG [--name NAME] [--opts key=value ...] [--resume CKPT] [--overwrite]
                           [--device cpu|cuda]
    torchrun --nproc_per_node N train.py CONFIG ...     # data parallel (DDP) over N processes

The run folder is `<output_folder>/<config name>_<NAME or timestamp>` (a suffix `_1`, `_2`, ...
is added instead of reusing an existing one, unless --overwrite). It receives config.yaml,
log.txt, logs/ (TensorBoard), last.pth, epoch_NNN.pth, and at the end results.json and
metrics.json. `--resume RUN/last.pth` (or `--resume RUN`, or one of its epoch_NNN.pth /
iter_*.pth) continues that run in its folder from that checkpoint, mid-epoch included, rebuilt
from the config stored in the checkpoint (else RUN/config.yaml): CONFIG may be left out; if
given it must agree with the stored config. With --resume, `--opts` may change only
libs/engine/stored_config.py RESUME_SAFE_KEYS (opt.epochs, opt.print_freq, opt.eval_start_epoch,
opt.eval_interval, opt.ckpt_freq, opt.ckpt_every_iters, opt.keep_last, loader.num_workers,
threads, dataset.feat_folder, dataset.json_file); any other key is an error. A run with no epoch
left to train is an error (exit 2) that says how to train longer or to evaluate it with eval.py.
Ctrl-C / SIGTERM writes last.pth, prints the resume command and exits with status 130.
All inputs (config, checkpoint, both datasets) are checked before the run folder is created.
`loader.batch_size` is the global batch under torchrun and with `opt.accumulate` (see
libs/engine/distributed.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DistributedSampler

import libs.ops
from libs.cli import (
    add_deprecated_alias, add_device_arg, add_opts_arg, add_threads_arg, pick_device, run_cli,
)
from libs.core.config import Config, ConfigError, load_config
from libs.core.safe_io import load_yaml
from libs.datasets import build_dataset, build_loader
from libs.engine import distributed as dist_utils
from libs.engine.checkpoint import load_checkpoint, resolve_checkpoint
from libs.engine.checkpoint_schema import check_training_checkpoint
from libs.engine.data_checks import check_batches, warn_setup
from libs.engine.early_log import EarlyLog
from libs.engine.run_folder import (
    CONFIG_NAME, MARKER_NAME, check_output_folder, make_run_folder, run_folder_path,
)
from libs.engine.run_lock import RunLock
from libs.engine.stored_config import RESUME_SAFE_KEYS, resume_config
from libs.engine.train_loop import TrainingInterrupted, train
from libs.engine.validation import check_val_lengths, check_validation_settings
from libs.evaluation import format_table
from libs.modeling import build_model
from libs.utils.logging import setup_logging
from libs.utils.paths import check_file_name
from libs.utils.seeding import fix_random_seed
from libs.utils.threads import setup_threads, warn_thread_change

logger = logging.getLogger("train")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is None and args.resume is None:
        parser.error("give a CONFIG to start a run, or --resume RUN to continue one")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a temporal action detector (train + final evaluation)."
    )
    parser.add_argument(
        "config", nargs="?", default=None,
        help="YAML config file (optional with --resume: the run's stored config is used)",
    )
    parser.add_argument("--name", dest="output", default=None, metavar="NAME",
                        help="run name: the run folder is <output_folder>/<config name>_<NAME> "
                        "(default: a timestamp)")
    parser.add_argument("--per-class", action="store_true",
                        help="also print AP per class after the final evaluation")
    add_opts_arg(parser, "opt.epochs=3 model.block.type=dbm")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue a run (a run folder, or its last.pth / epoch_NNN.pth / iter_*.pth) with "
        f"its stored config; --opts may then change only {', '.join(RESUME_SAFE_KEYS)}",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run folder of the same name"
    )
    add_device_arg(parser)
    add_threads_arg(parser)
    add_deprecated_alias(parser, "--output", "--name")
    return parser


def check_resume_folder(ckpt: Path) -> None:
    """A resumed run writes log.txt, checkpoints, results.json and metrics.json next to its
    checkpoint: that folder must be a run folder train.py created (it holds MARKER_NAME)."""
    folder = ckpt.parent
    if (folder / MARKER_NAME).is_file():
        return
    raise ConfigError(
        f"--resume {ckpt}: {folder} holds no {MARKER_NAME}, so it is not a run folder train.py created, "
        "and resuming would write log.txt, checkpoints, results.json and metrics.json there; to continue "
        f"training from this checkpoint, copy it into a folder of its own and mark that folder (mkdir RUN "
        f"&& cp {ckpt} RUN/ && touch RUN/{MARKER_NAME}), then --resume RUN; for a run folder made by an "
        f"older version: touch {folder / MARKER_NAME}"
    )


def check_run_name(cfg: Config, args: argparse.Namespace) -> None:
    """`--name` plain, the folder `<config name>_<NAME>` one file name (<= 255 bytes), and
    output_folder a folder (or new), for a new run."""
    if args.resume is None:
        check_output_folder(cfg.output_folder)  # before the datasets and the run folder
    if args.resume is None and args.output is not None:
        check_file_name(run_folder_path(cfg, args.output).name, "run folder name",
                        fix="give a shorter --name (the folder is <config name>_<NAME>)")


def run_config(args: argparse.Namespace) -> Config:
    """The command-line config, or with --resume the run's stored one (plus safe --opts).

    With --resume, `args.resume` becomes the checkpoint file, checked before anything is built.
    """
    if args.resume is None:
        return load_config(args.config, args.opts)
    args.resume = resolve_checkpoint(args.resume, "--resume checkpoint")
    # a run another process holds is refused before its files are read
    rank0 = os.environ.get("RANK", "0") == "0"  # torchrun's rank; no process group yet
    lock = RunLock(args.resume.parent).acquire() if rank0 else None
    try:
        state = load_checkpoint(args.resume)
        check_training_checkpoint(state, args.resume)
        stored = state.get("config")
        if stored is None:  # written before checkpoints held it: the run folder's copy
            folder_config = args.resume.parent / CONFIG_NAME
            if not folder_config.is_file():
                raise ConfigError(f"--resume {args.resume}: the checkpoint stores no config and "
                                  f"{folder_config} does not exist")
            stored = load_yaml(str(folder_config), "config")
        cfg = resume_config(stored, str(args.resume), args.opts, args.config)
        check_resume_folder(args.resume)  # after the checkpoint's own checks: the input first
        return cfg
    except BaseException:
        if lock is not None:
            lock.release()
        raise


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


def build_inputs(cfg: Config, args: argparse.Namespace, device: torch.device):
    """Both datasets and the model, checked, then the run folder (with log.txt) and its lock.

    Every input comes before the folder, so a bad one leaves no empty folder behind; what was
    logged meanwhile is written at the top of log.txt.

    Returns:
        (train_set, val_set, model on `device`, run folder).
    """
    early = EarlyLog(enabled=dist_utils.is_main_process())
    try:
        train_set = build_dataset(cfg.dataset, "train", is_training=True)
        val_set = build_dataset(cfg.dataset, "val", is_training=False)
        check_batches(cfg, len(train_set))
        warn_setup(cfg, len(val_set.label_dict))
        model = build_model(cfg.model, cfg.train, cfg.test).to(device)
        check_val_lengths(cfg, val_set, model.size_divisor)
        run_folder = prepare_run_folder(cfg, args)
    except BaseException:
        early.replay()  # nowhere to write: just detach the buffer
        raise
    if dist_utils.is_main_process():
        setup_logging(run_folder)
        early.replay()  # the lines above, at the top of log.txt
    else:  # the other ranks only report problems, on the console
        setup_logging(None, level=logging.WARNING)
    return train_set, val_set, model, run_folder


def run(args: argparse.Namespace) -> int:
    cfg = run_config(args)
    check_validation_settings(cfg)  # before any folder, dataset or process group
    check_run_name(cfg, args)
    threads = setup_threads(args.threads, cfg.threads)  # before any parallel work
    if args.resume is not None:
        warn_thread_change(cfg.threads, threads)
    cfg.threads = threads.count  # stored with the run: its resume uses the same count
    device = dist_utils.init_distributed(pick_device(args.device))
    # before anything that draws random numbers; ranks differ (crops, dropout) but DDP gives
    # every rank rank 0's initial weights, and rank 0 matches a single-process run
    generator = fix_random_seed(cfg.seed + dist_utils.get_rank())
    train_set, val_set, model, run_folder = build_inputs(cfg, args, device)
    logger.info("CPU threads: %d (%s)", threads.count, threads.source)  # now in log.txt
    if args.resume is not None and args.output is not None:
        logger.warning("--name is ignored with --resume: continuing in %s", run_folder)
    logger.info(
        "config %s (overrides %s) on %s; run folder %s",
        args.config or f"stored in {args.resume}", args.opts, device, run_folder,
    )  # fmt: skip
    logger.info("kernels: %s", libs.ops.report())
    logger.info("datasets: %d training, %d validation videos", len(train_set), len(val_set))
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
