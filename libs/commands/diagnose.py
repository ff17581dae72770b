"""Diagnose a detector's errors as DETAD does (false positives, false negatives, sensitivity).

    python tools/diagnose.py RESULTS_JSON --gt GT_JSON --split test --protocol thumos14 --out DIR \
        [--tiou 0.5 ...] [--bins NAME=E0,E1,...[:L0,L1,...] ...] [--limit-factor 10] \
        [--min-tiou 0.1] [--blocked ID ...] [--exclude ID ...] [--config CONFIG.yaml] [--no-figures]

Writes DIR/diagnosis.json, DIR/{false_positive,false_negative,sensitivity}_analysis.png and a
self-contained DIR/report.html, and prints the headline numbers (%). RESULTS_JSON is an
ActivityNet results JSON (eval.py --out, tools/infer.py), or a raw prediction cache
(eval.py --save-raw, a .pt file): it is post-processed with the test settings saved in it (or
those of --config) and its config goes into the report. GT_JSON may be DETAD's augmented
annotation file (characteristics per annotation) or the plain one (they are computed). Bad input
exits with status 2 and a one-line message. The old form `GT_JSON RESULTS_JSON` still works for
one release (with a deprecation line).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence


from libs.cli import (
    add_deprecated_alias, add_results_and_gt, add_tiou_arg, positive_int, resolve_gt, unit_float,
)
from libs.diagnosis import PROTOCOLS, parse_bins
from libs.diagnosis.api import check_diagnosis_dir, run_diagnosis
from libs.diagnosis.from_run import is_raw_cache, load_raw_results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="DETAD diagnosis of a results JSON (same numbers).")
    add_results_and_gt(p, "results JSON {'results': {video: [{label, segment, score}]}}, or a "
                          "raw prediction cache (eval.py --save-raw)")
    p.add_argument("--split", nargs="+", default=["validation"],
                   help="subset name(s), case-insensitive (default: validation)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="thumos14",
                   help="DETAD's settings: thumos14 (tIoU 0.5) or activitynet (0.5:0.05:0.95)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    add_tiou_arg(p, None, "tIoU thresholds (default: the protocol's)")
    p.add_argument("--bins", nargs="+", default=[], metavar="NAME=E0,E1,...[:L0,L1,...]",
                   help="override or add a characteristic's bucket edges (and labels), "
                        "e.g. length=0,5,10,inf:S,M,L")
    p.add_argument("--limit-factor", type=positive_int, default=10,
                   help="false-positive analysis on each class's top limit_factor x N_c "
                        "predictions (default 10)")
    p.add_argument("--min-tiou", type=unit_float, default=0.1,
                   help="below this tIoU an unmatched prediction is a Background error")
    p.add_argument("--blocked", nargs="*", default=[], metavar="VIDEO_ID",
                   help="video ids removed from GT and results")
    p.add_argument("--exclude", nargs="*", default=[], metavar="VIDEO_ID",
                   help="video ids with known-wrong annotations, removed from GT and results")
    p.add_argument("--config", default=None, help="the run's config file, shown in the report")
    p.add_argument("--no-figures", action="store_true", help="skip the PNGs (no matplotlib needed)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    add_deprecated_alias(p, "--subset", "--split")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    return resolve_gt(parser, parser.parse_args(argv))


def _read_config(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf8")
    except OSError as e:
        raise ValueError(f"cannot read --config {path}: {e.strerror or e}") from None


def _buckets(values: dict) -> str:
    shown = {b: "–" if v is None else f"{100 * v:.1f}" for b, v in values.items()}
    return ", ".join(f"{b} {v}" for b, v in shown.items())


def summary(d: dict) -> str:
    """Headline numbers, in %, one block per analysis."""
    fp, sens = d["false_positive"], d["sensitivity"]
    lines = [
        f"average mAP {100 * d['average_mAP']:.2f}  average-mAP_N {100 * sens['base']:.2f} "
        f"(top-{d['settings']['limit_factor']}G: {100 * fp['average_mAP_N']:.2f})",
        "false positives, top-1G: " + ", ".join(
            f"{k} {100 * v:.1f}" for k, v in (fp["profile"]["1G"] or {}).items()),
        "average-mAP_N gain when removed: " + ", ".join(
            f"{k.replace(' Err', '')} {100 * v:+.2f}" for k, v in fp["average_mAP_N_gain"].items()),
    ]  # fmt: skip
    for name in d["false_negative"]:
        fn, se = _buckets(d["false_negative"][name]), _buckets(sens[name])
        lines.append(f"{name}: false negative % [{fn}]; average-mAP_N % [{se}]")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        bins = dict(parse_bins(text, args.protocol) for text in args.bins)
        check_diagnosis_dir(args.out, "--out", [("RESULTS", args.results), ("--gt", args.gt),
                                                ("--config", args.config)], figures=not args.no_figures)
        results, config, names = args.results, _read_config(args.config), None
        if is_raw_cache(results):
            results, names, saved = load_raw_results(results, args.config)
            config = config or saved
        d = run_diagnosis(
            args.gt, results, args.split, args.out, args.protocol,
            config=config, figures=not args.no_figures, label_names=names,
            tiou_thresholds=args.tiou, bins=bins, limit_factor=args.limit_factor,
            min_tiou_thr=args.min_tiou,
            blocked_videos=list(dict.fromkeys(args.blocked + args.exclude)),
        )  # fmt: skip
    except (ValueError, OSError) as e:
        print(f"diagnose: error: {e}", file=sys.stderr)
        return 2
    print(summary(d))
    print(f"written: {', '.join(d['files'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
