"""`make demo`: synthetic features over the real THUMOS-14 annotations → train → evaluate.

1. writes synthetic features (tools/make_synthetic.py) for all 412 THUMOS-14 videos into
   data/synthetic_thumos/ (skipped when already there);
2. trains configs/demo_thumos_dbm.yaml with train.py (DBM block, CPU, a few minutes);
3. prints the mAP table at tIoU 0.3:0.1:0.7 and copies it to demo_output/metrics.json;
4. then trains the window-attention and ViM demo configs too, while the time budget allows
   (--budget seconds for all training, default 330), and prints the blocks side by side.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from libs.core.safe_io import read_json  # noqa: E402
from libs.utils.io import atomic_write_json  # noqa: E402
from libs.commands.make_synthetic import make_synthetic  # noqa: E402

ANNOTATIONS = "data/thumos/annotations/thumos14.json"
FEATURES = "data/synthetic_thumos"
OUTPUT = "demo_output"
BLOCKS = ("dbm", "winattn", "vim")
SYNTHETIC = dict(dim=128, feat_stride=8, num_frames=16, ext=".pt", seed=0)


def ensure_features() -> None:
    stamp = os.path.join(FEATURES, "_synthetic.json")
    if os.path.isfile(stamp) and read_json(stamp, "synthetic-feature stamp") == SYNTHETIC:
        print(f"[demo] synthetic features already in {FEATURES}/")
        return
    t0 = time.time()
    summary = make_synthetic(ANNOTATIONS, FEATURES, **SYNTHETIC)
    atomic_write_json(stamp, SYNTHETIC)
    print(
        f"[demo] wrote synthetic features for {summary.get('videos', '?')} videos in {time.time() - t0:.0f}s"
    )


def train_block(block: str) -> dict:
    config = f"configs/demo_thumos_{block}.yaml"
    t0 = time.time()
    cmd = [sys.executable, "train.py", config, "--name", "demo", "--overwrite"]
    print(f"[demo] {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    run = os.path.join(OUTPUT, f"demo_thumos_{block}_demo")
    metrics = read_json(os.path.join(run, "metrics.json"), "metrics")
    metrics["train_eval_seconds"] = round(time.time() - t0, 1)
    metrics["run_folder"] = run
    return metrics


def print_side_by_side(results: dict) -> None:
    tious = next(iter(results.values()))["tiou"]
    print("\n[demo] mAP (%) by block, synthetic THUMOS-14 features")
    print(f"{'block':9s}" + "".join(f"{'@' + format(t, '.1f'):>8s}" for t in tious) + f"{'avg':>8s}{'time':>8s}")
    for block, m in results.items():
        cells = "".join(f"{100 * v:8.2f}" for v in m["mAP"])
        print(f"{block:9s}{cells}{100 * m['average_mAP']:8.2f}{m['train_eval_seconds']:7.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--budget", type=float, default=330.0,
        help="seconds of training + evaluation for all blocks; a block that would overrun it "
        "(judged by the slowest block so far) is skipped",
    )
    parser.add_argument(
        "--blocks", nargs="+", default=list(BLOCKS), choices=BLOCKS,
        help="blocks to train, in order (the first one is the demo's result)",
    )
    args = parser.parse_args()
    os.chdir(REPO)
    ensure_features()
    results, t0 = {}, time.time()
    for block in args.blocks:
        spent = time.time() - t0
        if results and spent + max(m["train_eval_seconds"] for m in results.values()) > args.budget:
            print(f"[demo] skipping {block}: it would overrun the {args.budget:.0f}s budget")
            continue
        results[block] = train_block(block)
    main_metrics = results[args.blocks[0]]
    os.makedirs(OUTPUT, exist_ok=True)
    shutil.copyfile(
        os.path.join(main_metrics["run_folder"], "metrics.json"),
        os.path.join(OUTPUT, "metrics.json"),
    )
    print_side_by_side(results)
    at05 = main_metrics["mAP"][main_metrics["tiou"].index(0.5)]
    print(f"\n[demo] {args.blocks[0]} mAP@0.5 = {100 * at05:.2f}%  (written to {OUTPUT}/metrics.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
