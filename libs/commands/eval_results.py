"""Evaluate an ActivityNet results JSON against an annotation JSON (ActivityNet detection mAP).

    python tools/eval_results.py GT_JSON RESULTS_JSON --split test --tiou 0.3 0.4 0.5 0.6 0.7 \
        [--json OUT.json] [--per-class] [--remove-duplicates] [--blocked ID ...] [--exclude ID ...]

Prints the protocol line and the mAP table (%). ``--json`` writes ``{"tiou": [...], "mAP": [...],
"average_mAP": x, "protocol": {...}}`` (fractions) atomically. Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence


import numpy as np

from libs.cli import tiou_threshold
from libs.evaluation import format_table
from libs.evaluation.protocol import ProtocolEvaluator
from libs.utils.io import atomic_write_json

logger = logging.getLogger("eval_results")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="ActivityNet detection mAP of a results JSON (official semantics)."
    )
    p.add_argument("gt_json", help="annotation JSON with a 'database' key")
    p.add_argument(
        "results_json", help="results JSON: {'results': {video_id: [{label, segment, score}]}}"
    )
    p.add_argument(
        "--split",
        nargs="+",
        default=["validation"],
        help="subset name(s), case-insensitive (default: validation)",
    )
    p.add_argument(
        "--tiou",
        nargs="+",
        type=tiou_threshold,
        default=np.linspace(0.5, 0.95, 10).tolist(),
        help="tIoU thresholds (default: 0.50:0.05:0.95, as the official tool)",
    )
    p.add_argument(
        "--json", metavar="OUT", help="write {'tiou', 'mAP', 'average_mAP'} (fractions) here"
    )
    p.add_argument("--per-class", action="store_true", help="also print AP per class")
    p.add_argument(
        "--remove-duplicates",
        action="store_true",
        help="ActionFormer/VMS GT clean-up: drop zero-length and near-duplicate events "
        "(not official)",
    )
    p.add_argument(
        "--blocked",
        nargs="*",
        default=[],
        metavar="VIDEO_ID",
        help="video ids removed from GT and results (official ActivityNet blocked videos)",
    )
    p.add_argument(
        "--exclude",
        nargs="*",
        default=[],
        metavar="VIDEO_ID",
        help="video ids with known-wrong annotations, removed from GT and results "
        "(e.g. THUMOS-14 video_test_0000270)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        protocol = {
            "remove_duplicates": args.remove_duplicates,
            "blocked_videos": list(dict.fromkeys(args.blocked)),
            "exclude_videos": list(dict.fromkeys(args.exclude)),
        }
        evaluator = ProtocolEvaluator(args.gt_json, args.split, args.tiou, protocol)
        result = evaluator.evaluate(args.results_json)
        print(format_table(result, per_class=args.per_class))
        if args.json:
            try:
                atomic_write_json(args.json, result.to_json())
            except OSError as e:
                raise ValueError(f"cannot write --json {args.json}: {e.strerror or e}") from None
    except (ValueError, OSError) as e:
        print(f"eval_results: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
