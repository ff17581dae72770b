"""Print our mAP next to the numbers published in the video-mamba-suite TAL README.

    python tools/paper_table.py W.json V.json D.json --dataset thumos [--blocks winattn vim dbm]

Each METRICS_JSON is what `eval.py --metrics` writes: {"tiou": [...], "mAP": [...],
"average_mAP": x}, mAP values as fractions. They are matched to --blocks by position. The table
shows percentages: for every block one row "ours" and one row "paper", with the tIoU columns the
README reports (all five for THUMOS; 0.5 / 0.75 / 0.95 for the others) and the average mAP,
which for ANet/HACS/FineAction is the mean over all ten thresholds 0.50:0.05:0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

# README of OpenGVLab/video-mamba-suite temporal-action-localization (commit ec9108b), mAP %.
# Keys: tIoU -> mAP, plus "avg". The HACS "winattn" row repeats ANet's 0.75 / 0.95 numbers in the
# README (44.61 / 12.73); it is reproduced as published.
PAPER: dict[str, dict[str, dict]] = {
    "thumos": {
        "winattn": {0.3: 82.26, 0.4: 81.85, 0.5: 75.05, 0.6: 65.82, 0.7: 50.27, "avg": 71.86},
        "vim": {0.3: 86.22, 0.4: 82.87, 0.5: 76.42, 0.6: 66.43, 0.7: 50.25, "avg": 72.44},
        "dbm": {0.3: 86.89, 0.4: 83.09, 0.5: 76.90, 0.6: 65.91, 0.7: 50.82, "avg": 72.72},
    },
    "anet": {
        "winattn": {0.5: 61.47, 0.75: 44.61, 0.95: 12.73, "avg": 41.19},
        "vim": {0.5: 62.31, 0.75: 43.17, 0.95: 9.65, "avg": 41.77},
        "dbm": {0.5: 62.43, 0.75: 43.49, 0.95: 10.23, "avg": 42.02},
    },
    "hacs": {
        "winattn": {0.5: 62.62, 0.75: 44.61, 0.95: 12.73, "avg": 43.34},
        "vim": {0.5: 63.78, 0.75: 45.45, 0.95: 13.01, "avg": 44.26},
        "dbm": {0.5: 64.02, 0.75: 45.71, 0.95: 13.34, "avg": 44.56},
    },
    "fineaction": {
        "winattn": {0.5: 43.11, 0.75: 27.09, 0.95: 5.32, "avg": 27.22},
        "vim": {0.5: 44.15, 0.75: 28.30, 0.95: 6.14, "avg": 28.36},
        "dbm": {0.5: 45.44, 0.75: 28.82, 0.95: 6.79, "avg": 29.04},
    },
}
BLOCK_NAMES = {
    "winattn": "ActionFormer (Win Attn)",
    "vim": "ActionMamba (ViM)",
    "dbm": "ActionMamba (DBM)",
}


def load_metrics(path: str) -> dict:
    """Read one metrics JSON and return {tIoU (rounded to 2 decimals): mAP %, "avg": avg %}."""
    with open(path) as f:
        data = json.load(f)
    for key in ("tiou", "mAP", "average_mAP"):
        if key not in data:
            raise ValueError(f"{path}: missing key '{key}' (expected eval.py --metrics output)")
    if len(data["tiou"]) != len(data["mAP"]):
        raise ValueError(
            f"{path}: 'tiou' has {len(data['tiou'])} values but 'mAP' has {len(data['mAP'])}"
        )
    out = {round(float(t), 2): 100.0 * float(m) for t, m in zip(data["tiou"], data["mAP"])}
    out["avg"] = 100.0 * float(data["average_mAP"])
    return out


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(dataset: str, rows: list[tuple[str, dict]]) -> str:
    """rows: [(block, our metrics from load_metrics)] -> a Markdown table with paper rows and Δavg."""
    paper = PAPER[dataset]
    columns = [k for k in next(iter(paper.values())) if k != "avg"]
    header = ["block", "source"] + [f"{t:g}" for t in columns] + ["avg", "Δavg"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for block, ours in rows:
        ref = paper.get(block)
        name = BLOCK_NAMES.get(block, block)
        delta = None if ref is None else ours["avg"] - ref["avg"]
        lines.append(
            "| "
            + " | ".join(
                [name, "ours"]
                + [_cell(ours.get(t)) for t in columns]
                + [_cell(ours["avg"]), "-" if delta is None else f"{delta:+.2f}"]
            )
            + " |"
        )
        if ref is not None:
            lines.append(
                "| "
                + " | ".join(
                    [name, "paper"] + [_cell(ref.get(t)) for t in columns] + [_cell(ref["avg"]), ""]
                )
                + " |"
            )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="+", help="metrics JSONs written by eval.py --metrics")
    parser.add_argument("--dataset", required=True, choices=sorted(PAPER))
    parser.add_argument(
        "--blocks",
        nargs="+",
        default=["winattn", "vim", "dbm"],
        help="block of each metrics file, in the same order",
    )
    args = parser.parse_args(argv)
    if len(args.metrics) != len(args.blocks):
        parser.error(
            f"{len(args.metrics)} metrics files for {len(args.blocks)} blocks ({' '.join(args.blocks)})"
        )
    rows = [(block, load_metrics(path)) for block, path in zip(args.blocks, args.metrics)]
    avg_note = (
        "tIoU 0.3:0.1:0.7" if args.dataset == "thumos" else "tIoU 0.50:0.05:0.95 (10 thresholds)"
    )
    print(f"{args.dataset}: mAP (%), average over {avg_note}")
    print(format_table(args.dataset, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
