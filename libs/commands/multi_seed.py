"""Train + evaluate one config with several seeds and report mean ± std of the mAP per tIoU.

    python tools/multi_seed.py CONFIG --seeds 5 [--first-seed S | --seed-list S1 S2 ...]
                               [--opts key=value ...] [--name NAME] [--device cpu|cuda]
                               [--json summary.json] [--keep-going]

Each seed is one ordinary `python train.py CONFIG --name <NAME>_seed<S> --opts ... seed=S` run
(a subprocess, so runs cannot leak state into each other), which trains and evaluates the EMA
weights at the end; its `metrics.json` is collected from the run folder. The seeds are
`first_seed, first_seed + 1, ...` with `first_seed` = the config's `seed` by default, so the first
run is the config's usual run. The std is the sample standard deviation (n - 1); with one seed it
is 0. Training logs stream to stderr as usual; the table goes to stdout, the summary (per-seed
metrics, run folders, mean, std) to --json. A failed seed stops everything, or with --keep-going
is reported and left out (exit status 1 either way).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


from libs.cli import add_device_arg, positive_int, run_cli, seed_arg
from libs.core.config import config_files, load_config
from libs.core.safe_io import read_json
from libs.engine.run_folder import run_folder_path
from libs.utils.paths import check_file_name, check_outputs, check_outside
from libs.utils.io import atomic_write_json

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds libs/



def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("config", help="YAML config")
    p.add_argument("--seeds", type=positive_int, default=5, help="number of seeds (default: %(default)s)")
    p.add_argument("--first-seed", type=seed_arg, default=None, help="default: the config's seed")
    p.add_argument("--seed-list", type=seed_arg, nargs="+", default=None, help="explicit seeds")
    p.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides passed to every run (before seed=S)",
    )
    p.add_argument("--name", default="multiseed",
                   help="run names are <NAME>_seed<S> (train.py --name)")
    add_device_arg(p)
    p.add_argument("--json", default=None, metavar="OUT",
                   help="write the summary (per-seed metrics, mean, std) here")
    p.add_argument("--keep-going", action="store_true", help="continue after a failed seed")
    return p


def seeds_to_run(args: argparse.Namespace, config_seed: int) -> list[int]:
    if args.seed_list:
        return list(dict.fromkeys(args.seed_list))
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    first = config_seed if args.first_seed is None else args.first_seed
    return [first + i for i in range(args.seeds)]


def train_one(args: argparse.Namespace, seed: int) -> tuple[Optional[Path], str]:
    """Run train.py for one seed; returns (run folder or None on failure, a status line)."""
    name = f"{args.name}_seed{seed}"
    cmd = [
        sys.executable,
        "-m",
        "libs.commands.train",
        args.config,
        "--name",
        name,
        "--opts",
        *args.opts,
        f"seed={seed}",
    ]
    if args.device:
        cmd += ["--device", args.device]
    tic = time.time()
    print(f"[multi_seed] seed {seed}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    # the training runs as `python -m libs.commands.train` with this checkout's libs importable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # stderr: the live log
    took = f"{time.time() - tic:.0f} s"
    if proc.returncode != 0:
        return None, f"seed {seed}: train.py failed with exit status {proc.returncode} after {took}"
    found = re.findall(r"^run folder: (.+)$", proc.stdout, flags=re.MULTILINE)
    folder = (
        Path(found[-1].strip())
        if found
        else run_folder_path(load_config(args.config, args.opts), name)
    )
    return folder, f"seed {seed}: done in {took}, run folder {folder}"


def read_metrics(folder: Path) -> dict:
    """The `metrics.json` of a run: the reported {"tiou", "mAP", "average_mAP", ...} (plus the
    "last" and "best" epochs, see libs/engine/validation.py)."""
    path = folder / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: did the run evaluate at the end?")
    return read_json(path, "metrics")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def summarize(runs: dict[int, dict]) -> dict:
    """Per tIoU and for the average mAP: mean and std over the seeds (fractions)."""
    tious = next(iter(runs.values()))["tiou"]
    for seed, m in runs.items():
        if m["tiou"] != tious:
            raise ValueError(
                f"seed {seed} was evaluated at tIoU {m['tiou']}, the others at {tious}"
            )
    per_tiou = [mean_std([m["mAP"][i] for m in runs.values()]) for i in range(len(tious))]
    avg = mean_std([m["average_mAP"] for m in runs.values()])
    return {
        "tiou": tious,
        "mAP_mean": [m for m, _ in per_tiou],
        "mAP_std": [s for _, s in per_tiou],
        "average_mAP_mean": avg[0],
        "average_mAP_std": avg[1],
        "seeds": list(runs),
    }


def format_summary(runs: dict[int, dict], summary: dict) -> str:
    """Per-seed rows, then mean and std rows (in %), then one `mean ± std` line per tIoU."""
    head = [f"{t:.2f}" for t in summary["tiou"]] + ["Avg"]
    width = max(len(str(s)) for s in runs) + 5
    lines = [f"{'seed':<{width}} " + " ".join(f"{h:>6}" for h in head)]
    for seed, m in runs.items():
        lines.append(
            f"{seed:<{width}} " + " ".join(f"{100 * v:6.2f}" for v in [*m["mAP"], m["average_mAP"]])
        )
    for label, key in (("mean", "mean"), ("std", "std")):
        values = [*summary[f"mAP_{key}"], summary[f"average_mAP_{key}"]]
        lines.append(f"{label:<{width}} " + " ".join(f"{100 * v:6.2f}" for v in values))
    pairs = zip(summary["tiou"], summary["mAP_mean"], summary["mAP_std"])
    per_tiou = ", ".join(f"{t:.2f}: {100 * m:.2f} ± {100 * s:.2f}" for t, m, s in pairs)
    avg = f"{100 * summary['average_mAP_mean']:.2f} ± {100 * summary['average_mAP_std']:.2f}"
    lines.append(f"mAP (%) mean ± std over {len(runs)} seeds: {per_tiou}; average {avg}")
    return "\n".join(lines)


def check_summary_output(args: argparse.Namespace, cfg) -> None:
    """--json is none of the files the runs read (CONFIG and its `_base_` files, the annotation
    JSON, external scores), no feature, symbolic link, FIFO or folder: checked before any training."""
    inputs = [("CONFIG", path) for path in config_files(args.config)]
    inputs += [("dataset.json_file", cfg.dataset.json_file or None),
               ("test.ext_score_file", cfg.test.ext_score_file or None)]
    outputs = [("--json", args.json)]
    check_outputs(inputs, outputs)
    check_outside(outputs, cfg.dataset.feat_folder, "feature folder (dataset.feat_folder)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.opts)  # fail fast on a bad config or override
    check_file_name(args.name, "run name (--name)", fix="give a plain name; run folders are made in output_folder")
    check_summary_output(args, cfg)
    seeds = seeds_to_run(args, cfg.seed)
    runs, folders, failures = {}, {}, []
    for seed in seeds:
        folder, status = train_one(args, seed)
        print(f"[multi_seed] {status}", file=sys.stderr, flush=True)
        if folder is None:
            failures.append(status)
            if not args.keep_going:
                break
            continue
        runs[seed], folders[seed] = read_metrics(folder), str(folder)
    if runs:
        summary = summarize(runs)
        print(format_summary(runs, summary))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                args.json,
                {
                    **summary,
                    "config": args.config,
                    "opts": list(args.opts),
                    "runs": {str(s): {"run_folder": folders[s], **runs[s]} for s in runs},
                    "failed": failures,
                },
            )
    for status in failures:
        print(f"error: {status}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
