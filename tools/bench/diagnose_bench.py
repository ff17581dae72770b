"""Benchmark: `libs.diagnosis.diagnose` vs DETAD on a 40k-prediction THUMOS-14 results file.

Builds synthetic predictions for the real THUMOS-14 test ground truth (212 videos, 20 classes):
jittered copies of GT segments (right and wrong class) and random segments, full-precision
scores (no ties, so numbers compare across numpy versions). Times our three analyses and, when
``--detad-python`` points at an environment that runs DETAD (see
tests/data/detad/make_reference.py), DETAD's, on the same machine, and compares the numbers.
Without it, the DETAD time recorded in README.md is printed for reference.

    python tools/benchmark.py diagnose [--num-preds 40000] \
        [--detad-python /tmp/detad_venv/bin/python --detad-src /tmp/detad/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import libs  # noqa: F401
except ImportError:  # run directly as `python tools/bench/diagnose_bench.py`
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from libs.core.annotations import read_annotations
from libs.diagnosis import diagnose
from libs.diagnosis.api import run_diagnosis

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GT = str(REPO / "data/thumos/annotations/thumos14.json")
DRIVER = str(REPO / "tests/data/detad/make_reference.py")
# DETAD (numpy 1.23.5, pandas 1.5.3) on this benchmark, measured by `--detad-python` on the
# project's 2-core CPU machine, shared with other jobs (load ~20); printed when DETAD is not re-run
RECORDED_DETAD_SECONDS = 349.8
NUMBER_KEYS = ("false_positive", "false_negative", "sensitivity")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", default=DEFAULT_GT, help="annotation JSON (default: THUMOS-14)")
    parser.add_argument("--split", default="test", help="subset (default: test)")
    parser.add_argument("--num-preds", type=int, default=40000, help="predictions in total")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; min reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detad-python", default=None, help="python of a DETAD environment")
    parser.add_argument("--detad-src", default=None, help="DETAD's src/ folder")
    parser.add_argument("--keep", default=None, help="also write the results JSON here")


def synthetic_results(gt_path: str, split: str, num_preds: int, seed: int) -> dict:
    """ActivityNet results dict with ``num_preds`` predictions spread over the split's videos."""
    rng = np.random.default_rng(seed)
    db = read_annotations(gt_path, "ground truth").database
    videos = [v for v, x in db.items() if x["subset"].lower() == split.lower()]
    labels = sorted({a["label"] for v in videos for a in db[v]["annotations"]})
    per_video = np.bincount(rng.integers(len(videos), size=num_preds), minlength=len(videos))
    results = {}
    for vid, n in zip(videos, per_video.tolist()):
        anns, dur = db[vid]["annotations"], float(db[vid]["duration"])
        entries = []
        for _ in range(n):
            kind = rng.random()
            if anns and kind < 0.6:  # jittered GT, a tenth of them with a wrong label
                a = anns[rng.integers(len(anns))]
                s, e = a["segment"]
                s, e = np.asarray([s, e]) + rng.normal(0, 0.2 * (e - s) + 0.2, 2)
                label = a["label"] if kind < 0.54 else labels[rng.integers(len(labels))]
                score = rng.beta(3, 2)
            else:  # background
                s = rng.uniform(0, dur)
                e, score = s + rng.exponential(6.0), rng.beta(1, 3)
                label = labels[rng.integers(len(labels))]
            segment = [float(s), float(max(s, e))]
            entries.append({"label": label, "segment": segment, "score": float(score)})
        results[vid] = entries
    return {"version": "bench", "results": results, "external_data": {}}


def _exact_subset(gt_path: str, split: str) -> str:
    """DETAD matches the subset name exactly; ours ignores case."""
    subsets = {v["subset"] for v in read_annotations(gt_path, "ground truth").database.values()}
    return next(s for s in sorted(subsets) if s.lower() == split.lower())


def _run_detad(args: argparse.Namespace, results_path: str, tmp: str) -> tuple[dict, float]:
    out = os.path.join(tmp, "detad.json")
    cmd = [args.detad_python, DRIVER, "run", args.gt, results_path, "--detad-src", args.detad_src,
           "--split", _exact_subset(args.gt, args.split), "--protocol", "thumos14", "--out", out]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(out) as f:
        return json.load(f), wall


def _max_diff(ours, theirs) -> float:
    """Largest |difference| over the numbers both hold (None / NaN buckets skipped)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return max([_max_diff(ours[k], theirs[k]) for k in ours if k in theirs] or [0.0])
    if isinstance(ours, float) and isinstance(theirs, float):
        return abs(ours - theirs)
    return 0.0


def run(args: argparse.Namespace) -> dict:
    results = synthetic_results(args.gt, args.split, args.num_preds, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        res_path = args.keep or os.path.join(tmp, "results.json")
        with open(res_path, "w") as f:
            json.dump(results, f)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            ours = diagnose(args.gt, res_path, args.split, "thumos14")
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_diagnosis(args.gt, res_path, args.split, os.path.join(tmp, "out"), "thumos14")
        full = time.perf_counter() - start
        out = {"predictions": args.num_preds, "ours_s": min(times), "ours_with_report_s": full}
        if args.detad_python and args.detad_src:
            theirs, wall = _run_detad(args, res_path, tmp)
            out.update(detad_s=theirs["detad"]["seconds"], detad_wall_s=wall,
                       max_abs_diff=_max_diff({k: ours[k] for k in NUMBER_KEYS},
                                              {k: theirs[k] for k in NUMBER_KEYS}))
        else:
            out["detad_s"] = RECORDED_DETAD_SECONDS
    _print(out)
    return out


def _print(out: dict) -> None:
    print(f"diagnosis of {out['predictions']} predictions (THUMOS-14 test, tIoU 0.5)")
    print(f"  ours (numbers)          {out['ours_s']:8.2f} s")
    print(f"  ours (+ figures, html)  {out['ours_with_report_s']:8.2f} s")
    if out.get("detad_s") is None:
        print("  DETAD                   not run (give --detad-python and --detad-src)")
        return
    note = "" if "detad_wall_s" in out else " (recorded, not re-run)"
    print(f"  DETAD                   {out['detad_s']:8.2f} s{note}")
    print(f"  speed-up                {out['detad_s'] / out['ours_s']:8.1f}x")
    if "max_abs_diff" in out:
        print(f"  max |ours - DETAD|      {out['max_abs_diff']:.2e}")
