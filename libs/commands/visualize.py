"""Pictures of detections: per-video timelines, and precision-recall / per-class AP charts.

    python tools/visualize.py timeline RESULTS [--config CONFIG | --gt JSON [--split S ...]]
        [--videos ID ...] [--max-videos 10] [--top-k 10] [--min-score 0] [--out timelines]
    python tools/visualize.py pr RESULTS (--config CONFIG | --gt JSON [--split S ...])
        [--tiou 0.3 0.4 0.5 0.6 0.7] [--curve-tiou 0.5] [--out pr.png]

RESULTS is an ActivityNet results JSON (eval.py's results_eval.json, train.py's results.json,
tools/infer.py's detections.json); labels may be class names or integer ids.

- `timeline`: one PNG per video (`<out>/<video id>.png`). One row per class; in each row
  the ground-truth segments (green, upper band) over the top-k detections of the video (lower
  band, darker = higher score, score printed on wide bars). The time axis is in seconds. Without
  ground truth (e.g. infer.py output) only the detections are drawn.
- `pr`: one PNG: precision-recall curves at one tIoU (the precision envelope the AP integrates),
  and a bar chart of the per-class AP averaged over the tIoU set, computed with the project's
  ActivityNet evaluator, so the numbers are those of eval.py.

`--config` takes the annotation JSON, the val split, the tIoU set and the evaluation protocol
(`eval:`: GT de-duplication, blocked and excluded videos) from a training config; `--gt` uses the
official protocol.
Every output is checked before anything is drawn: it may not be RESULTS, the annotation JSON, the
config or one of its `_base_` files, a symbolic link or a FIFO; PNGs are written atomically. Video
ids that give the same file name (`a/b`, `a_b`) get `_2`, `_3`, ... instead of replacing each other.
Needs matplotlib (`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Optional, Sequence


import numpy as np

from libs.cli import (
    add_deprecated_alias, add_tiou_arg, deprecation, positive_int, run_cli, tiou_threshold, unit_float,
)
from libs.core.annotations import load_json_source, read_annotations
from libs.core.config import EvalCfg
from libs.evaluation import build_evaluator
from libs.utils.paths import check_output_dir, check_outputs
from libs.viz.pr import plot_pr, pr_curves
from libs.viz.timeline import plot_timeline  # libs/commands/infer.py imports it from here


DEFAULT_TIOUS = [0.3, 0.4, 0.5, 0.6, 0.7]  # tIoU set with --gt and no --tiou


def safe_name(video_id: str) -> str:
    """A file-name-safe version of a video id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)


class GroundTruthSource:
    """Annotation JSON (or None), split, tIoU set and evaluation protocol: from --config (its
    dataset and `eval:` sections) or from --gt / --split (official protocol); --tiou overrides
    the tIoU set."""

    def __init__(self, args: argparse.Namespace):
        self.json_file, self.split, self.tious = args.gt, list(args.split), list(DEFAULT_TIOUS)
        self.eval_cfg = EvalCfg()
        if args.config:
            from libs.core.config import load_config

            cfg = load_config(args.config)
            self.json_file, self.split = cfg.dataset.json_file, list(cfg.dataset.val_split)
            self.tious, self.eval_cfg = list(cfg.dataset.tiou_thresholds), cfg.eval
        if args.tiou:
            self.tious = list(args.tiou)


def _timeline_videos(results: dict, database: dict, args) -> list[str]:
    """--videos, else the results' videos of the --split subsets (all when the annotations have no
    subsets); a split that names no subset of the annotations is an error, not "all videos"."""
    if args.videos:
        return list(args.videos)
    ids = list(results)
    subsets = sorted({str(v.get("subset", "")) for v in database.values() if isinstance(v, dict)} - {""})
    if subsets and args.split:
        wanted = {s.lower() for s in args.split}
        if not wanted & {s.lower() for s in subsets}:
            raise ValueError(f"--split {' '.join(args.split)}: no such subset in the annotations; "
                             f"available subsets: {', '.join(subsets)}")
        ids = [v for v in ids if str(database.get(v, {}).get("subset", "")).lower() in wanted]
        if not ids:
            raise ValueError(f"no video of {args.results} is in the subset(s) {' '.join(args.split)} of "
                             f"the annotations; choose --split from {', '.join(subsets)} or give --videos")
    return ids[: args.max_videos]


def timeline_paths(folder: str, video_ids: Sequence[str]) -> dict[str, Path]:
    """`<folder>/<safe video id>.png` per video; ids that sanitize alike (`a/b`, `a_b`) get `_2`, `_3`...
    so that no PNG replaces another."""
    check_output_dir(folder, "--out", "for the <video id>.png files")
    paths, taken = {}, set()
    for vid in video_ids:
        name, n = safe_name(vid), 1
        while (name if n == 1 else f"{name}_{n}").lower() in taken:
            n += 1
        name = name if n == 1 else f"{name}_{n}"
        taken.add(name.lower())
        paths[vid] = Path(folder) / f"{name}.png"
    return paths


def input_paths(args: argparse.Namespace, source: GroundTruthSource) -> list[tuple[str, Optional[str]]]:
    """What visualize reads: RESULTS, the annotation JSON, the config and its `_base_` files."""
    from libs.core.config import config_files

    inputs = [("RESULTS", args.results), ("--config" if args.config else "--gt", source.json_file)]
    return inputs + [("--config", path) for path in (config_files(args.config) if args.config else [])]


def _gt_entries(video: dict) -> list[dict]:
    return [{"label": a["label"], "segment": a["segment"]} for a in video.get("annotations", [])]


def _named(entries: list[dict], id_names: dict[int, str]) -> list[dict]:
    """Integer labels -> the annotation JSON's class names where it has them."""
    return [
        dict(e, label=id_names.get(e["label"], e["label"])) if isinstance(e["label"], int) else e
        for e in entries
    ]


def run_timeline(args: argparse.Namespace) -> int:
    results_file, _ = load_json_source(args.results, "results")
    results = results_file.get("results")
    if not isinstance(results, dict):
        raise ValueError(f"results file {args.results} has no 'results' object")
    source = GroundTruthSource(args)
    args.split = source.split
    annotations = read_annotations(source.json_file) if source.json_file else None
    database = annotations.database if annotations else {}
    id_names = annotations.id_to_name if annotations else {}
    info = results_file.get("video_info", {})
    videos = _timeline_videos(results, database, args)
    for vid in videos:
        if vid not in results and vid not in database:
            raise ValueError(f"video '{vid}' is neither in {args.results} nor in the annotations")
    outs = timeline_paths(args.out, videos)
    check_outputs(input_paths(args, source), [("--out file", p) for p in outs.values()])
    written = []
    for vid in videos:  # every output checked: now draw
        dets = _named(results.get(vid, []), id_names)
        gt = _gt_entries(database.get(vid, {}))
        duration = database.get(vid, {}).get("duration") or info.get(vid, {}).get("duration")
        if not duration:  # no metadata: the last segment end
            duration = max([e["segment"][1] for e in gt + dets] + [1.0])
        written.append(plot_timeline(vid, float(duration), gt, dets, outs[vid], top_k=args.top_k,
                                     min_score=args.min_score))
    for path in written:
        print(f"timeline: {path}")
    return 0


def run_pr(args: argparse.Namespace) -> int:
    source = GroundTruthSource(args)
    if not source.json_file:
        raise ValueError("pr needs ground truth: give --config CONFIG or --gt ANNOTATIONS.json")
    curve_tiou = args.curve_tiou
    if curve_tiou is None:
        curve_tiou = 0.5 if any(abs(0.5 - t) < 1e-9 for t in source.tious) else source.tious[0]
    if not any(abs(curve_tiou - t) < 1e-9 for t in source.tious):
        raise ValueError(f"--curve-tiou {curve_tiou} is not in the tIoU set {source.tious}")
    check_outputs(input_paths(args, source), [("--out", args.out)])  # before any work
    results, _ = load_json_source(args.results, "results")
    evaluator = build_evaluator(source.eval_cfg, source.json_file, source.split, source.tious)
    result = evaluator.evaluate(results)
    gt = evaluator.detection_map.gt
    curves = pr_curves(evaluator.detection_map, results, curve_tiou)
    num_gt = np.bincount(gt.class_idx, minlength=gt.num_classes)  # [C]
    out = plot_pr(result, curves, num_gt, curve_tiou, args.out, title=f"{Path(args.results).name}: ")
    print(f"pr: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("results", help="ActivityNet results JSON")
    common.add_argument("--config", help="take the annotation JSON, val split and tIoU set from it")
    common.add_argument("--gt", metavar="GT_JSON", help="annotation JSON (instead of --config)")
    common.add_argument("--split", nargs="+", default=["validation"], help="subset(s) of --gt")
    add_tiou_arg(common, None, f"tIoU set (default: the config's, else {DEFAULT_TIOUS})")
    common.add_argument("--tious", dest="old_tious", nargs="+", type=tiou_threshold,
                        help=argparse.SUPPRESS)  # old name of --tiou (see resolve_tious)
    tl = sub.add_parser("timeline", parents=[common], help="one PNG per video: GT + top detections")
    tl.add_argument("--videos", nargs="+", help="video ids (default: the first --max-videos)")
    tl.add_argument("--max-videos", type=positive_int, default=10)
    tl.add_argument("--top-k", type=positive_int, default=10, help="detections drawn per video")
    tl.add_argument("--min-score", type=unit_float, default=0.0)
    tl.add_argument("--out", default="timelines", help="folder for <video id>.png")
    add_deprecated_alias(tl, "--out-dir", "--out")
    pr = sub.add_parser("pr", parents=[common], help="PR curves + per-class AP bar chart")
    pr.add_argument("--curve-tiou", type=tiou_threshold, default=None,
                    help="tIoU of the PR curves, one of the set (default: 0.5, else the first)")
    pr.add_argument("--out", default="pr.png", help="the PNG to write (default: %(default)s)")
    return parser


def resolve_tious(args: argparse.Namespace) -> argparse.Namespace:
    """Old flags, one release: `--tious SET` was the tIoU set, and pr's `--tiou T` (one value)
    the PR-curve tIoU; both keep that meaning, with a deprecation line."""
    if args.old_tious is not None:
        deprecation("--tious", "--tiou")
    pr_curve = getattr(args, "curve_tiou", "n/a") is None
    if pr_curve and args.tiou is not None and len(args.tiou) == 1:
        deprecation("pr --tiou T (one value: the PR-curve tIoU)", "--curve-tiou T")
        args.curve_tiou, args.tiou = args.tiou[-1], None
    if args.old_tious is not None:
        args.tiou, args.old_tious = args.tiou or args.old_tious, None
    return args


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return resolve_tious(build_parser().parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: run_timeline(args) if args.command == "timeline" else run_pr(args))


if __name__ == "__main__":
    sys.exit(main())
