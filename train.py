"""Train a temporal action detector, evaluate its EMA weights, keep everything in one run folder.

    python train.py CONFIG [--output NAME] [--opts key=value ...] [--resume CKPT] [--overwrite]
                           [--device cpu|cuda]

The run folder is `<output_folder>/<config name>_<NAME or timestamp>` (a suffix `_1`, `_2`, ...
is added instead of reusing an existing one, unless --overwrite). It receives config.yaml,
log.txt, logs/ (TensorBoard), last.pth, epoch_NNN.pth, and at the end results.json and
metrics.json. `--resume RUN/last.pth` continues that run in its folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

import libs.ops
from libs.core.config import Config, load_config
from libs.datasets import build_dataset, build_loader
from libs.engine.run_folder import make_run_folder
from libs.engine.train_loop import train
from libs.evaluation import format_table
from libs.modeling import build_model
from libs.utils.logging import setup_logging
from libs.utils.seeding import fix_random_seed

logger = logging.getLogger("train")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a temporal action detector (train + final evaluation)."
    )
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--output", default=None, help="run name suffix (default: a timestamp)")
    parser.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. opt.epochs=3 model.block.type=dbm",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue a run from its last.pth / epoch_NNN.pth",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run folder of the same name"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="default: cuda if available, else cpu",
    )
    return parser.parse_args(argv)


def pick_device(name: Optional[str]) -> torch.device:
    """The requested device, or cuda when available; asking for a missing GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA GPU is visible")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def prepare_run_folder(cfg: Config, args: argparse.Namespace) -> Path:
    """A new run folder, or the folder of the checkpoint being resumed."""
    if args.resume is None:
        return make_run_folder(cfg, args.output, args.overwrite)
    resume = Path(args.resume)
    if not resume.is_file():
        raise FileNotFoundError(f"--resume checkpoint not found: {resume}")
    return resume.parent


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.opts)
    device = pick_device(args.device)
    run_folder = prepare_run_folder(cfg, args)
    setup_logging(run_folder)
    if args.resume is not None and args.output is not None:
        logger.warning("--output is ignored with --resume: continuing in %s", run_folder)
    logger.info(
        "config %s (overrides %s) on %s; run folder %s", args.config, args.opts, device, run_folder
    )
    logger.info("kernels: %s", libs.ops.report())
    generator = fix_random_seed(cfg.seed)  # before anything that draws random numbers

    train_set = build_dataset(cfg.dataset, "train", is_training=True)
    val_set = build_dataset(cfg.dataset, "val", is_training=False)
    model = build_model(cfg.model, cfg.train, cfg.test).to(device)
    common = dict(
        num_workers=cfg.loader.num_workers,
        max_seq_len=cfg.dataset.max_seq_len,
        size_divisor=model.size_divisor,
    )
    train_loader = build_loader(
        train_set, batch_size=cfg.loader.batch_size, is_training=True, generator=generator, **common
    )
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
    print(format_table(result))
    print(f"run folder: {run_folder}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        # diverged training: the message names the epoch, the iteration and the loss terms
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
