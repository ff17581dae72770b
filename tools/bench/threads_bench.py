"""Training time under a competing CPU load, with the thread setting and with the old behaviour.

    python tools/benchmark.py threads [--epochs 10] [--busy 1] [--modes old,auto,2] [--rounds 1]

Trains configs/custom_example.yaml (synthetic features made first, in a temporary folder) in a
fresh process per run, quiet and then next to `--busy` pure-Python spin loops (each one
process, pinned to nothing), and prints wall times and busy / quiet ratios for each mode:
  old   torch's own defaults: the thread setting is switched off (libs/utils/threads.py
        `setup_threads` replaced by one that changes nothing), the behaviour before it existed;
  auto  the default: no --threads, TAL_NUM_THREADS or config threads;
  N     --threads N (e.g. 2: as many threads as cores, whatever the load).
Issue 16's target: with one competing busy process on 2 cores, training time grows <= 2.5x.
Other processes on the machine change every number: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/custom_example.yaml"
SYNTHETIC = [  # the command of configs/custom_example.yaml's header, into a temporary folder
    "--gt", "data/custom_example/annotations.json", "--input-dim", "64", "--feat-stride", "8",
    "--num-frames", "16", "--file-prefix", "kitchen_", "--feature-type", "_r21d",
    "--file-ext", ".npy",
]  # fmt: skip
SPIN = "while True:\n    pass\n"
# the old behaviour: the entry point runs with the thread setting switched off
OLD = (
    "import sys; sys.path.insert(0, {repo!r})\n"
    "import libs.utils.threads as t\n"
    "import torch\n"
    "t.setup_threads = lambda *a, **k: t.ThreadChoice(torch.get_num_threads(), 'torch default')\n"
    "from libs.commands.train import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
NEW = (
    "import sys; sys.path.insert(0, {repo!r})\n"
    "from libs.commands.train import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=CONFIG, help="training config (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="opt.epochs (after warmup)")
    parser.add_argument("--busy", type=int, default=1, help="competing spin processes")
    parser.add_argument("--modes", default="old,auto,2",
                        help="comma list of old | auto | a thread count (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; the minimum is reported")


def make_features(work: Path) -> Path:
    """Synthetic features of the custom example in `work`/feats (a few seconds)."""
    feats = work / "feats"
    cmd = [sys.executable, str(REPO / "tools/make_synthetic.py"), *SYNTHETIC, "--out", str(feats)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return feats


def train_command(mode: str, args: argparse.Namespace, work: Path, feats: Path) -> list[str]:
    """The train.py command line of one run (the old behaviour through a patching launcher)."""
    script = (OLD if mode == "old" else NEW).format(repo=str(REPO))
    cmd = [sys.executable, "-c", script, args.config, "--name", "bench", "--overwrite",
           "--device", "cpu", "--opts", f"dataset.feat_folder={feats}",
           f"output_folder={work / 'runs'}", f"opt.epochs={args.epochs}"]  # fmt: skip
    if mode not in ("old", "auto"):
        cmd += ["--threads", mode]
    return cmd


def time_run(cmd: list[str], log: Path) -> tuple[float, str]:
    """(wall seconds, the thread count the run logged in `log`) of one training process."""
    env = {k: v for k, v in os.environ.items() if k not in ("TAL_NUM_THREADS", "OMP_NUM_THREADS")}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"training failed ({out.returncode}):\n{out.stderr[-2000:]}")
    found = re.search(r"CPU threads: (\d+)", log.read_text() if log.is_file() else "")
    return wall, found.group(1) if found else "torch default"


def start_spinners(count: int) -> list[subprocess.Popen]:
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    time.sleep(0.5)  # running before the training process samples the load
    return spinners


def stop_spinners(spinners: list[subprocess.Popen]) -> None:
    for proc in spinners:
        proc.kill()
        proc.wait()


def measure(args: argparse.Namespace, modes: list[str], work: Path, feats: Path) -> dict:
    """{mode: {"quiet": s, "busy": s, "threads_quiet": n, "threads_busy": n}}, min over rounds."""
    res: dict = {m: {"quiet": float("inf"), "busy": float("inf")} for m in modes}
    for _ in range(args.rounds):
        for load in ("quiet", "busy"):
            spinners = start_spinners(args.busy) if load == "busy" else []
            try:
                for mode in modes:
                    log = work / "runs" / f"{Path(args.config).stem}_bench" / "log.txt"
                    wall, threads = time_run(train_command(mode, args, work, feats), log)
                    res[mode][load] = min(res[mode][load], wall)
                    res[mode][f"threads_{load}"] = threads
                    print(f"  {mode} {load}: {wall:.1f} s, threads {threads}", flush=True)
            finally:
                stop_spinners(spinners)
    for r in res.values():
        r["ratio"] = r["busy"] / r["quiet"]
    return res


def print_table(res: dict, args: argparse.Namespace, load_before: tuple) -> None:
    print(f"train {args.config}, opt.epochs={args.epochs}, {os.cpu_count()} CPUs, "
          f"{len(os.sched_getaffinity(0))} in the affinity mask; load average before "
          f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    busy = f"busy({args.busy}) s"
    print(f"{'mode':>6} {'threads q/b':>14} {'quiet s':>8} {busy:>10} {'ratio':>6}")
    for mode, r in res.items():
        threads = f"{r['threads_quiet']}/{r['threads_busy']}"
        print(f"{mode:>6} {threads:>14} {r['quiet']:8.1f} {r['busy']:10.1f} {r['ratio']:6.2f}")
    target = "met" if all(r["ratio"] <= 2.5 for m, r in res.items() if m == "auto") else "MISSED"
    if "auto" in res:
        print(f"target (auto: busy/quiet <= 2.5 with one competing process): {target}")


def run(args: argparse.Namespace, modes: Optional[list[str]] = None) -> dict:
    modes = modes or [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in ("old", "auto") and not mode.isdigit():
            raise SystemExit(f"error: --modes takes old, auto or a thread count, got {mode!r}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="threads_bench_") as tmp:
        work = Path(tmp)
        res = measure(args, modes, work, make_features(work))
    print_table(res, args, load_before)
    return res


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    run(p.parse_args())
