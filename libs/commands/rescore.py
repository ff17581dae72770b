"""Redo post-processing and evaluation from saved raw predictions, without the model.

    python eval.py CONFIG CKPT --save-raw raw.pt                   # the model runs once
    python tools/rescore.py raw.pt CONFIG [--opts test.nms_sigma=0.7 ...] [--json OUT.json]
                            [--out OUT.json] [--per-class]
    python tools/rescore.py raw.pt CONFIG --sweep test.nms_sigma=0.3,0.5,0.7,0.9

The raw file holds each video's pre-NMS candidates (feature-grid units) and the metadata the
post-processing needs (fps, feat_stride, feat_num_frames, duration). CONFIG (+ --opts) gives
the `test.*` post-processing knobs (nms_method, iou_threshold, nms_sigma, min_score,
max_seg_num, multiclass_nms, voting_thresh, ext_score_file) and the evaluation set-up
(dataset.json_file, dataset.val_split, dataset.tiou_thresholds). With the settings eval.py used
the numbers are identical to eval.py's. `test.pre_nms_thresh`, `test.pre_nms_topk` and
`test.duration_thresh` act inside the model: changing them warns and has no effect.

`--sweep KEY=V1,V2,...` (repeatable) evaluates every combination and prints one row each;
settings with identical numbers (a knob without effect) share one row, `a|b`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence


from libs.cli import (
    add_config_tiou_arg, add_deprecated_alias, add_opts_arg, add_threads_arg, config_inputs,
    opts_with_tiou, run_cli,
)
from libs.core.config import ConfigError, load_config
from libs.evaluation import EvalResult, format_table
from libs.inference import RawPredictions, score, write_eval_files
from libs.utils.io import atomic_write_json
from libs.utils.paths import check_outputs
from libs.utils.threads import setup_threads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("raw", help="raw predictions written by eval.py --save-raw")
    p.add_argument("config", help="YAML config: test.* knobs and the evaluation set-up")
    add_opts_arg(p, "test.nms_sigma=0.7 test.nms_method=hard")
    p.add_argument("--out", metavar="OUT", help="write the detections (ActivityNet JSON) here")
    p.add_argument("--json", metavar="OUT", help="write {'tiou', 'mAP', 'average_mAP'} here")
    p.add_argument("--per-class", action="store_true", help="also print AP per class")
    add_config_tiou_arg(p)
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="evaluate every combination of these values (repeatable)",
    )
    add_threads_arg(p)
    add_deprecated_alias(p, "--results", "--out")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


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


def same_number_groups(rows: list[tuple[str, EvalResult]]) -> list[tuple[list[str], EvalResult]]:
    """Settings whose numbers are identical (a knob without effect, e.g. nms_sigma under hard
    NMS), grouped in first-seen order: [(settings, result)]."""
    groups: dict[tuple, tuple[list[str], EvalResult]] = {}
    for name, r in rows:
        key = (tuple(r.mAP), r.average_mAP)
        groups.setdefault(key, ([], r))[0].append(name)
    return list(groups.values())


def merged_setting(settings: list[str]) -> str:
    """["a=1 b=x", "a=1 b=y"] -> "a=1 b=x|y" when the settings are a full grid, else joined by " / "."""
    combos = [s.split(" ") for s in settings]
    columns = [list(dict.fromkeys(c[i] for c in combos)) for i in range(len(combos[0]))]
    if math.prod(len(col) for col in columns) != len(settings):
        return " / ".join(settings)
    return " ".join(col[0].split("=", 1)[0] + "=" + "|".join(t.split("=", 1)[1] for t in col)
                    for col in columns)


def sweep_config(args: argparse.Namespace, combo: list[str]):
    """CONFIG + --opts + one sweep setting; a bad setting is named as --sweep, not --opts."""
    try:
        return load_config(args.config, [*args.opts, *combo])
    except ConfigError as exc:
        text = str(exc)
        for setting in combo:
            text = text.replace(f"--opts {setting}", f"--sweep {setting}")
        raise ConfigError(text) from None


def run_sweep(raw: RawPredictions, args: argparse.Namespace) -> int:
    rows = []
    for combo in sweep_overrides(args.sweep):
        cfg = sweep_config(args, combo)
        _, result = score(raw, cfg)
        rows.append((" ".join(combo), result))
    groups = same_number_groups(rows)
    shown = [(merged_setting(names), r) for names, r in groups]
    width = max(len(name) for name, _ in shown)
    print(f"{'setting':<{width}} " + " ".join(f"{t:>6.2f}" for t in rows[0][1].tiou) + "    Avg")
    for name, r in shown:
        print(f"{name:<{width}} " + " ".join(f"{100 * m:6.2f}" for m in r.mAP)
              + f" {100 * r.average_mAP:6.2f}")
    if len(groups) < len(rows):
        print(f"({len(rows)} settings, {len(groups)} distinct results: settings with identical "
              "numbers share a row, a|b; the knob has no effect there, e.g. nms_sigma under hard NMS)")
    best_name, best = max(shown, key=lambda row: row[1].average_mAP)
    print(f"best average mAP {100 * best.average_mAP:.2f} with {best_name}")
    if args.json:
        first = {name: names[0] for names, _ in groups for name in names}
        atomic_write_json(args.json, {"sweep": [
            dict(setting=n, **r.to_json(), **({"same_as": first[n]} if first[n] != n else {}))
            for n, r in rows]})  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    args.opts = opts_with_tiou(args.opts, args.tiou)
    cfg = load_config(args.config, args.opts)
    check_outputs([("RAW", args.raw), *config_inputs(cfg, args.config, "CONFIG")],
                  [("--json", args.json), ("--out", args.out)])
    setup_threads(args.threads, cfg.threads)
    raw = RawPredictions.load(args.raw)
    if args.sweep:
        return run_sweep(raw, args)
    for out in (args.out, args.json):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    detections, result = score(raw, cfg)
    write_eval_files(detections, result, raw.id_to_name, args.out, args.json)
    print(format_table(result, per_class=args.per_class))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("libs.utils.threads").setLevel(logging.INFO)  # its `CPU threads` line, as eval.py
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
