"""Redo post-processing and evaluation from saved raw predictions, without the model.

    python eval.py CONFIG CKPT --save-raw raw.pt                   # the model runs once
    python tools/rescore.py raw.pt CONFIG [--opts test.nms_sigma=0.7 ...] [--json OUT.json]
                            [--results OUT.json] [--per-class]
    python tools/rescore.py raw.pt CONFIG --sweep test.nms_sigma=0.3,0.5,0.7,0.9

The raw file holds each video's pre-NMS candidates (feature-grid units) and the metadata the
post-processing needs (fps, feat_stride, feat_num_frames, duration). CONFIG (+ --opts) gives
the `test.*` post-processing knobs (nms_method, iou_threshold, nms_sigma, min_score,
max_seg_num, multiclass_nms, voting_thresh, ext_score_file) and the evaluation set-up
(dataset.json_file, dataset.val_split, dataset.tiou_thresholds). With the settings eval.py used
the numbers are identical to eval.py's. `test.pre_nms_thresh`, `test.pre_nms_topk` and
`test.duration_thresh` act inside the model: changing them warns and has no effect.

`--sweep KEY=V1,V2,...` (repeatable) evaluates every combination and prints one row each.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence


from libs.cli import add_opts_arg, run_cli
from libs.core.config import load_config
from libs.evaluation import format_table
from libs.inference import RawPredictions, score, write_eval_files
from libs.utils.io import atomic_write_json
from libs.utils.paths import check_outputs


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("raw", help="raw predictions written by eval.py --save-raw")
    p.add_argument("config", help="YAML config: test.* knobs and the evaluation set-up")
    add_opts_arg(p, "test.nms_sigma=0.7 test.nms_method=hard")
    p.add_argument("--json", metavar="OUT", help="write {'tiou', 'mAP', 'average_mAP'} here")
    p.add_argument("--results", metavar="OUT", help="write the detections (ActivityNet JSON) here")
    p.add_argument("--per-class", action="store_true", help="also print AP per class")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="evaluate every combination of these values (repeatable)",
    )
    return p.parse_args(argv)


def sweep_overrides(sweeps: Sequence[str]) -> list[list[str]]:
    """["a=1,2", "b=x,y"] -> [["a=1", "b=x"], ["a=1", "b=y"], ["a=2", "b=x"], ["a=2", "b=y"]]."""
    axes = []
    for text in sweeps:
        key, sep, values = text.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ValueError(
                f"--sweep {text!r} must look like KEY=V1,V2,... (e.g. test.nms_sigma=0.5,0.7)"
            )
        axes.append([f"{key.strip()}={v.strip()}" for v in values.split(",") if v.strip()])
    return [list(combo) for combo in itertools.product(*axes)]


def run_sweep(raw: RawPredictions, args: argparse.Namespace) -> int:
    combos = sweep_overrides(args.sweep)
    rows = []
    for combo in combos:
        cfg = load_config(args.config, [*args.opts, *combo])
        _, result = score(raw, cfg)
        rows.append((" ".join(combo), result))
    width = max(len(name) for name, _ in rows)
    tious = rows[0][1].tiou
    print(f"{'setting':<{width}} " + " ".join(f"{t:>6.2f}" for t in tious) + "    Avg")
    for name, r in rows:
        print(
            f"{name:<{width}} "
            + " ".join(f"{100 * m:6.2f}" for m in r.mAP)
            + f" {100 * r.average_mAP:6.2f}"
        )
    best_name, best = max(rows, key=lambda row: row[1].average_mAP)
    print(f"best average mAP {100 * best.average_mAP:.2f} with {best_name}")
    if args.json:
        atomic_write_json(args.json, {"sweep": [dict(setting=n, **r.to_json()) for n, r in rows]})
    return 0


def run(args: argparse.Namespace) -> int:
    check_outputs([("RAW", args.raw), ("CONFIG", args.config)], [("--json", args.json), ("--results", args.results)])
    raw = RawPredictions.load(args.raw)
    if args.sweep:
        return run_sweep(raw, args)
    cfg = load_config(args.config, args.opts)
    for out in (args.results, args.json):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    detections, result = score(raw, cfg)
    write_eval_files(detections, result, raw.id_to_name, args.results, args.json)
    print(format_table(result, per_class=args.per_class))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
