"""`make demo`: synthetic features over the real THUMOS-14 annotations → train → evaluate.

1. writes synthetic features (tools/make_synthetic.py) for all 412 THUMOS-14 videos into
   data/synthetic_thumos/ (skipped when already there);
2. trains configs/demo_thumos_dbm.yaml with train.py (DBM block, CPU, a few minutes);
3. prints the mAP table at tIoU 0.3:0.1:0.7 and copies it to demo_output/metrics.json;
4. then trains the window-attention and ViM demo configs too, while the time budget allows
   (--budget seconds for all training, default 600), and prints the blocks side by side.

Every step is recorded in demo_output/demo_last_run.json (machine, timings, mAP per block) when it
ends. Run again, the demo continues: a block already trained with the same config is reused (its
recorded numbers), an interrupted one resumes from its last.pth; --fresh retrains everything.
Ctrl-C stops the running block with a checkpoint and exits with status 130.
--update-readme then rewrites the README's demo section from the record (tools/demo_record.py).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from libs.core.safe_io import read_json  # noqa: E402
from libs.utils.io import atomic_write_json  # noqa: E402
from tools import demo_record  # noqa: E402

ANNOTATIONS = "data/thumos/annotations/thumos14.json"
FEATURES = "data/synthetic_thumos"
BLOCKS = ("dbm", "winattn", "vim")
SYNTHETIC = dict(dim=128, feat_stride=8, num_frames=16, ext=".pt", seed=0)
QUICK_OPTS = ["opt.epochs=1", "opt.warmup_epochs=0"]  # --quick: checks the pipeline, not the model
RECORD = "demo_last_run.json"
TRAIN = "train.py"  # run from the repository root (tests put a stand-in here)


class DemoStopped(Exception):
    """A child process stopped the demo; `code` is the exit status to pass on."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def ensure_features() -> Optional[float]:
    """Write the synthetic features unless present; seconds spent (None: already there)."""
    stamp = os.path.join(FEATURES, "_synthetic.json")
    if os.path.isfile(stamp) and read_json(stamp, "synthetic-feature stamp") == SYNTHETIC:
        print(f"[demo] synthetic features already in {FEATURES}/")
        return None
    from libs.commands.make_synthetic import make_synthetic  # imports torch: only when needed

    t0 = time.time()
    summary = make_synthetic(ANNOTATIONS, FEATURES, **SYNTHETIC)
    atomic_write_json(stamp, SYNTHETIC)
    spent = time.time() - t0
    print(f"[demo] wrote synthetic features for {summary.get('videos', '?')} videos in {spent:.0f}s")
    return round(spent, 1)


def run_child(cmd: List[str]) -> None:
    """Run `cmd` in its own session; Ctrl-C is passed on to it once (it then checkpoints).

    Raises:
        DemoStopped: the child failed (its status) or was interrupted (130).
    """
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    interrupted = False
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # the first Ctrl-C asks for a checkpoint, a second one aborts
            proc.send_signal(signal.SIGINT)
            interrupted = True
    if code != 0 and (interrupted or code in (130, -signal.SIGINT)):  # 0: it had finished
        raise DemoStopped("interrupted; run the same command again to continue (finished blocks "
                          "are kept, the interrupted one resumes from its last.pth)", 130)
    if code != 0:
        raise DemoStopped(f"{os.path.basename(cmd[1])} failed with exit status {code} "
                          "(its error is above)", code if 0 < code < 128 else 1)


def config_digest(config: str, opts: List[str]) -> str:
    """Identifies what a block's run was trained from: the config file's bytes and the --opts."""
    with open(os.path.join(REPO, config), "rb") as f:
        data = f.read()
    return hashlib.sha256(data + "\0".join(opts).encode()).hexdigest()[:16]


def train_block(block: str, args: argparse.Namespace, record: dict) -> dict:
    """Train and evaluate one block (or reuse / resume its run); its record entry."""
    config = f"configs/demo_thumos_{block}.yaml"
    opts = [f"output_folder={args.out}"] + (QUICK_OPTS if args.quick else [])
    digest = config_digest(config, opts)
    run = os.path.join(args.out, f"demo_thumos_{block}_demo")
    old = record["blocks"].get(block, {})
    same = old.get("digest") == digest and not args.fresh
    if same and "mAP" in old and os.path.isfile(os.path.join(run, "metrics.json")):
        print(f"[demo] {block}: already trained in {run}/ (recorded numbers; --fresh retrains)")
        return {**old, "reused": True}
    if same and finished_run(run):  # stopped after train.py's final evaluation, before the record
        print(f"[demo] {block}: already trained in {run}/ (its metrics.json; --fresh retrains)")
        return {**block_entry(run), "config": config, "digest": digest, "reused": True}
    resume = same and os.path.isfile(os.path.join(run, "last.pth"))
    cmd = [sys.executable, TRAIN] + (
        ["--resume", run] if resume else [config, "--name", "demo", "--overwrite", "--opts", *opts])
    print(f"[demo] {' '.join(cmd[1:])}", flush=True)
    record["blocks"][block] = {"config": config, "digest": digest, "run_folder": run}
    t0 = time.time()
    run_child(cmd)
    return {**block_entry(run), "config": config, "digest": digest, "resumed": resume,
            "train_eval_seconds": round(time.time() - t0, 1)}


def finished_run(run: str) -> bool:
    """train.py wrote the run's final metrics.json after its newest checkpoint."""
    metrics, last = os.path.join(run, "metrics.json"), os.path.join(run, "last.pth")
    return (os.path.isfile(metrics) and os.path.isfile(last)
            and os.path.getmtime(metrics) >= os.path.getmtime(last))


def block_entry(run: str) -> dict:
    """The numbers of a finished run (its metrics.json) for the record."""
    metrics = read_json(os.path.join(run, "metrics.json"), "metrics")
    return {**{key: metrics[key] for key in ("tiou", "mAP", "average_mAP")}, "run_folder": run}


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop like Ctrl-C (the running block checkpoints)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_record(args: argparse.Namespace, path: str) -> dict:
    """The record to fill: the previous one's blocks (to reuse them) unless --fresh."""
    old = read_json(path, "demo record") if os.path.isfile(path) and not args.fresh else {}
    return {"schema": demo_record.SCHEMA, "machine": demo_record.machine(), "started": _now(),
            "finished": None, "load_average": [demo_record.load_average(), None],
            "budget_seconds": args.budget, "quick": args.quick, "order": list(args.blocks),
            "main_block": args.blocks[0], "features_seconds": None, "total_seconds": None,
            "blocks": dict(old.get("blocks", {})) if old.get("quick") == args.quick else {}}


def run_blocks(args: argparse.Namespace, record: dict, path: str) -> None:
    """Train the blocks in order while the budget allows; the record saved after each."""
    t0 = time.time()
    for block in args.blocks:
        spent = [b["train_eval_seconds"] for k, b in record["blocks"].items()
                 if k in args.blocks[:args.blocks.index(block)] and "train_eval_seconds" in b]
        if demo_record.would_overrun(spent, time.time() - t0, args.budget):
            reason = f"it would overrun the {args.budget:.0f}s budget"
            print(f"[demo] skipping {block}: {reason}")
            record["blocks"][block] = {"skipped": reason}
            continue
        record["blocks"][block] = train_block(block, args, record)
        atomic_write_json(path, record)


def report(args: argparse.Namespace, record: dict) -> None:
    main = record["blocks"][record["main_block"]]
    shutil.copyfile(os.path.join(main["run_folder"], "metrics.json"),
                    os.path.join(args.out, "metrics.json"))
    print("\n" + "\n".join(demo_record.side_by_side(record)))
    print("\n" + demo_record.final_line(record, args.out))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--budget", type=float, default=demo_record.DEFAULT_BUDGET,
        help="seconds of training + evaluation for all blocks; a block that would overrun it "
        "(judged by the slowest block so far) is skipped")
    parser.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=BLOCKS,
                        help="blocks to train, in order (the first one is the demo's result)")
    parser.add_argument("--out", default="demo_output",
                        help="output folder: run folders, metrics.json, demo_last_run.json")
    parser.add_argument("--fresh", action="store_true",
                        help="retrain every block (default: reuse or resume earlier runs)")
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch per block, no warmup: checks the pipeline in a short time "
                        "(its numbers are not the demo's; --update-readme refuses them)")
    parser.add_argument("--update-readme", action="store_true",
                        help="then rewrite the README's demo section and docs/demo_last_run.json "
                        "from the record")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.quick and args.out == "demo_output":
        args.out = os.path.join("demo_output", "quick")  # keep the real demo's runs
    signal.signal(signal.SIGTERM, _stop)
    os.chdir(REPO)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, RECORD)
    record, t0 = new_record(args, path), time.time()
    try:
        record["features_seconds"] = ensure_features()
        run_blocks(args, record, path)
    except (DemoStopped, KeyboardInterrupt) as exc:
        atomic_write_json(path, record)
        print(f"[demo] {exc or 'interrupted'}", file=sys.stderr)
        return getattr(exc, "code", 130)
    record.update(finished=_now(), total_seconds=round(time.time() - t0, 1))
    record["load_average"][1] = demo_record.load_average()
    atomic_write_json(path, record)
    report(args, record)
    if args.update_readme:
        return demo_record.main([path])
    return 0


if __name__ == "__main__":
    sys.exit(main())
