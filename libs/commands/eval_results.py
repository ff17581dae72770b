"""Evaluate an ActivityNet results JSON against an annotation JSON (ActivityNet detection mAP).

    python tools/eval_results.py RESULTS_JSON --gt GT_JSON --split test --tiou 0.3 0.4 0.5 0.6 0.7 \
        [--json OUT.json] [--per-class] [--remove-duplicates] [--blocked ID ...] [--exclude ID ...]

Prints the protocol line and the mAP table (%). ``--json`` writes ``{"tiou": [...], "mAP": [...],
"average_mAP": x, "protocol": {...}}`` (fractions) atomically. Videos of the split with no
detection in RESULTS_JSON count as misses; a warning says how many there are. The old form
``eval_results.py GT_JSON RESULTS_JSON`` still works for one release (with a deprecation line).
Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from libs.cli import add_results_and_gt, add_tiou_arg, resolve_gt
from libs.core.annotations import load_json_source
from libs.evaluation import format_table
from libs.evaluation.protocol import ProtocolEvaluator
from libs.utils.io import atomic_write_json
from libs.utils.paths import check_outputs

logger = logging.getLogger("eval_results")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="ActivityNet detection mAP of a results JSON (official semantics)."
    )
    add_results_and_gt(p, "results JSON: {'results': {video_id: [{label, segment, score}]}}")
    p.add_argument("--split", nargs="+", default=["validation"],
                   help="subset name(s), case-insensitive (default: validation)")
    add_tiou_arg(p, np.linspace(0.5, 0.95, 10).tolist(),
                 "tIoU thresholds (default: 0.50:0.05:0.95, as the official tool)")
    p.add_argument("--json", metavar="OUT",
                   help="write {'tiou', 'mAP', 'average_mAP'} (fractions) here")
    p.add_argument("--per-class", action="store_true", help="also print AP per class")
    p.add_argument("--remove-duplicates", action="store_true",
                   help="ActionFormer/VMS GT clean-up: drop zero-length and near-duplicate events "
                   "(not official)")
    p.add_argument("--blocked", nargs="*", default=[], metavar="VIDEO_ID",
                   help="video ids removed from GT and results (official ActivityNet blocked videos)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="VIDEO_ID",
                   help="video ids with known-wrong annotations, removed from GT and results "
                   "(e.g. THUMOS-14 video_test_0000270)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    return resolve_gt(parser, parser.parse_args(argv))


def videos_without_detections(results: Mapping[str, Any], video_ids: Sequence[str]) -> list[str]:
    """The split's videos (GT order) that have no detection in an ActivityNet results dict."""
    entries = results.get("results")
    if not isinstance(entries, Mapping):
        return []  # the evaluator names the problem
    return [v for v in video_ids if not entries.get(v)]


def warn_missing(missing: list[str], total: int, source: str) -> None:
    """One stderr line when some of the split's videos have no detection."""
    if missing:
        print(
            f"warning: {len(missing)} of the {total} videos of the split have no detections in "
            f"{source} (e.g. {', '.join(missing[:3])}): their ground truth counts as missed; "
            "is the results file complete?",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    protocol = {
        "remove_duplicates": args.remove_duplicates,
        "blocked_videos": list(dict.fromkeys(args.blocked)),
        "exclude_videos": list(dict.fromkeys(args.exclude)),
    }
    check_outputs([("RESULTS", args.results), ("--gt", args.gt)], [("--json", args.json)])
    evaluator = ProtocolEvaluator(args.gt, args.split, args.tiou, protocol)
    video_ids = evaluator.detection_map.gt.video_ids
    data, source = load_json_source(args.results, "predictions")
    result = evaluator.evaluate(args.results)
    warn_missing(videos_without_detections(data, video_ids), len(video_ids), source)
    print(format_table(result, per_class=args.per_class))
    if args.json:
        try:
            atomic_write_json(args.json, result.to_json())
        except OSError as e:
            raise ValueError(f"cannot write --json {args.json}: {e.strerror or e}") from None
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"eval_results: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
