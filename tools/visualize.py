"""Pictures of detections: per-video timelines, and precision-recall / per-class AP charts.

    python tools/visualize.py timeline RESULTS [--config CONFIG | --gt JSON [--split S ...]]
        [--videos ID ...] [--max-videos 10] [--top-k 10] [--min-score 0] [--out-dir timelines]
    python tools/visualize.py pr RESULTS (--config CONFIG | --gt JSON [--split S ...])
        [--tiou 0.5] [--tious 0.3 0.4 0.5 0.6 0.7] [--out pr.png]

RESULTS is an ActivityNet results JSON (eval.py's results_eval.json, train.py's results.json,
tools/infer.py's detections.json); labels may be class names or integer ids.

- `timeline`: one PNG per video (`<out-dir>/<video id>.png`). One row per class; in each row
  the ground-truth segments (green, upper band) over the top-k detections of the video (lower
  band, darker = higher score, score printed on wide bars). The time axis is in seconds. Without
  ground truth (e.g. infer.py output) only the detections are drawn.
- `pr`: one PNG: precision-recall curves at one tIoU (the precision envelope the AP integrates),
  and a bar chart of the per-class AP averaged over the tIoU set, computed with the project's
  ActivityNet evaluator, so the numbers are those of eval.py.

`--config` takes the annotation JSON, the val split and the tIoU set from a training config.
Needs matplotlib (`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

if __package__ in (None, ""):  # run as `python tools/visualize.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from libs.evaluation import DetectionMAP, EvalResult  # noqa: E402
from libs.evaluation.matching import class_rankings, match_predictions  # noqa: E402

GT_COLOR = "#2e7d32"  # ground truth: dark green
DET_CMAP = "Blues"  # detections: light (low score) -> dark blue (high score)
MAX_PR_CURVES = 10  # classes drawn in the PR panel (those with the most GT segments)
MAX_AP_BARS = 40  # more classes: the 20 best and the 20 worst


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or a one-line install hint."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("tools/visualize.py needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _det_colormap(plt):
    """The detection colormap without its near-white start, so a low score stays visible."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(plt.get_cmap(DET_CMAP)(np.linspace(0.25, 1.0, 256)))


def safe_name(video_id: str) -> str:
    """A file-name-safe version of a video id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)


# --------------------------------------------------------------------------------------------
# timeline


def _lanes(segments: Sequence[tuple[float, float]]) -> list[int]:
    """Greedy interval packing: lane of each segment (in the given order) so none overlap."""
    ends: list[float] = []  # last end per lane
    lanes = []
    for start, end in segments:
        lane = next((i for i, e in enumerate(ends) if e <= start), len(ends))
        if lane == len(ends):
            ends.append(end)
        ends[lane] = max(ends[lane], end)
        lanes.append(lane)
    return lanes


def _row_classes(gt: Sequence[dict], dets: Sequence[dict]) -> list[str]:
    """Ground-truth classes first (first appearance), then the other detected ones (by score)."""
    rows = list(dict.fromkeys(str(g["label"]) for g in gt))
    rows += [c for c in dict.fromkeys(str(d["label"]) for d in dets) if c not in rows]
    return rows


def plot_timeline(
    video_id: str,
    duration: float,
    gt: Sequence[dict],
    detections: Sequence[dict],
    out: str | Path,
    *,
    top_k: int = 10,
    min_score: float = 0.0,
) -> Path:
    """Draw one video's ground truth and top detections on a time axis in seconds.

    Args:
        gt: [{"label", "segment": [s, e]}] (may be empty); detections: results entries
            [{"label", "segment": [s, e], "score"}]; labels are names (or ids, drawn as text).
        top_k: the best `top_k` detections with score >= `min_score` are drawn.
    Returns:
        The written PNG path.
    """
    plt = _pyplot()
    dets = sorted((d for d in detections if d["score"] >= min_score), key=lambda d: -d["score"])
    dets = dets[:top_k]
    rows = _row_classes(gt, dets)
    cmap = _det_colormap(plt)
    fig, ax = plt.subplots(figsize=(12, 1.6 + 0.7 * max(len(rows), 1)))
    # the y axis points down: in row r, GT fills [r + 0.08, r + 0.42], detections the band below
    det_top, det_span = (0.5, 0.44) if gt else (0.08, 0.84)
    for r, name in enumerate(rows):
        spans = [tuple(g["segment"]) for g in gt if str(g["label"]) == name]
        gt_lanes = _lanes(spans)  # overlapping GT segments side by side, not merged
        gt_height = 0.34 / (max(gt_lanes, default=0) + 1)
        for (s, e), lane in zip(spans, gt_lanes):
            ax.broken_barh(
                [(s, e - s)], (r + 0.08 + lane * gt_height, gt_height * 0.9), color=GT_COLOR
            )
        row_dets = [d for d in dets if str(d["label"]) == name]  # by descending score
        lanes = _lanes([tuple(d["segment"]) for d in row_dets])
        height = det_span / (max(lanes, default=0) + 1)
        for d, lane in zip(row_dets, lanes):
            (s, e), score = d["segment"], float(d["score"])
            y = r + det_top + lane * height
            ax.broken_barh(
                [(s, e - s)],
                (y, height * 0.9),
                color=cmap(score),
                edgecolor="#08306b",
                linewidth=0.5,
            )
            if e - s > 0.04 * duration:  # room for the score
                ax.text(
                    (s + e) / 2,
                    y + height * 0.45,
                    f"{score:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if score > 0.5 else "black",
                )
        if r:
            ax.axhline(r, color="#cccccc", linewidth=0.8)
    if not rows:
        ax.text(
            0.5,
            0.5,
            "no ground truth and no detections",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
    ax.set_xlim(0, duration)
    ax.set_ylim(max(len(rows), 1), 0)  # first class at the top
    ax.set_yticks([r + 0.5 for r in range(len(rows))], rows)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("class")
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    shown = f"top {len(dets)} detections" + (f" (score >= {min_score:g})" if min_score > 0 else "")
    what = f"{len(gt)} ground-truth segments" if gt else "no ground truth"
    ax.set_title(f"{video_id}  ({duration:.1f} s): {what}, {shown}", pad=24)
    _timeline_legend(plt, fig, ax, cmap, bool(gt))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _timeline_legend(plt, fig, ax, cmap, with_gt: bool) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    handles = [Patch(color=GT_COLOR, label="ground truth (upper band)")] if with_gt else []
    band = "lower band, " if with_gt else ""
    handles.append(Patch(color=cmap(0.75), label=f"detection ({band}shade = score)"))
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        ncol=2,
        frameon=False,
        fontsize=8,
        borderaxespad=0.2,
    )
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, pad=0.01, fraction=0.03)
    bar.set_label("detection score")


# --------------------------------------------------------------------------------------------
# precision-recall and per-class AP


def pr_curves(
    evaluator: DetectionMAP, results: Any, tiou: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class of `evaluator.class_names`: (recall [n], precision envelope [n]) at one tIoU.

    Uses the evaluator's own ranking and greedy matching, so the area under each curve is the
    class's AP at `tiou` (VOC-2011 interpolation: precision made non-increasing from the right).
    """
    preds = evaluator.parse(results)
    num_classes = evaluator.gt.num_classes
    rankings = class_rankings(preds.labels, preds.scores, num_classes)
    class_rank = np.zeros(len(preds.labels), dtype=np.int64)  # [N]
    for ranked in rankings:
        class_rank[ranked] = np.arange(len(ranked))
    gt = evaluator.gt
    tp = match_predictions(
        preds.segments,
        evaluator.gt_video_index(preds),
        preds.labels,
        class_rank,
        gt.segments,
        gt.video_idx,
        gt.class_idx,
        np.array([tiou]),
        num_classes,
    )[
        0
    ]  # [N]
    num_gt = np.bincount(gt.class_idx, minlength=num_classes)  # [C]
    curves = []
    for c, ranked in enumerate(rankings):
        hits = np.cumsum(tp[ranked].astype(np.float64))  # [n_c]
        recall = hits / max(num_gt[c], 1)
        precision = hits / np.arange(1, len(ranked) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(ranked) else precision
        curves.append((recall, envelope))
    return curves


def _bar_classes(ap_avg: np.ndarray) -> tuple[list[int], str]:
    """Class indices for the bar chart, best first, and a note when some are left out."""
    order = np.argsort(-ap_avg, kind="stable").tolist()
    if len(order) <= MAX_AP_BARS:
        return order, ""
    half = MAX_AP_BARS // 2
    return order[:half] + order[-half:], f" ({half} best and {half} worst of {len(order)})"


def plot_pr(
    result: EvalResult, curves, num_gt: np.ndarray, tiou: float, out: str | Path, title: str = ""
) -> Path:
    """Left: PR curves at `tiou`; right: per-class AP averaged over the tIoU set (bars)."""
    plt = _pyplot()
    ap_avg = result.ap.mean(axis=0)  # [C]
    t_index = int(np.argmin(np.abs(np.asarray(result.tiou) - tiou)))
    bars, note = _bar_classes(ap_avg)
    fig, (ax_pr, ax_ap) = plt.subplots(
        1, 2, figsize=(14, max(5.0, 1.5 + 0.28 * len(bars))), gridspec_kw={"width_ratios": [1, 1]}
    )
    drawn = np.argsort(-num_gt, kind="stable")[:MAX_PR_CURVES]
    for c in drawn.tolist():
        recall, precision = curves[c]
        hit = np.diff(np.r_[0.0, recall]) > 0  # true positives: where the recall steps up
        recall, precision = recall[hit], precision[hit]  # the staircase whose area is the AP
        ax_pr.plot(
            np.r_[0.0, recall],
            np.r_[precision[:1], precision],
            drawstyle="steps-pre",
            label=f"{result.class_names[c]} (AP {100 * result.ap[t_index, c]:.1f})",
        )
    ax_pr.set_xlim(0, 1)
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_xlabel("recall")
    ax_pr.set_ylabel("precision")
    left_out = f", {len(num_gt) - len(drawn)} classes not drawn" if len(num_gt) > len(drawn) else ""
    ax_pr.set_title(f"precision-recall at tIoU {result.tiou[t_index]:.2f}{left_out}")
    ax_pr.grid(color="#eeeeee")
    ax_pr.legend(fontsize=8, loc="lower left")

    y = np.arange(len(bars))
    ax_ap.barh(y, 100 * ap_avg[bars], color="#4c72b0", label="AP averaged over the tIoU set")
    ax_ap.scatter(
        100 * result.ap[t_index, bars],
        y,
        color="#dd8452",
        zorder=3,
        s=14,
        label=f"AP at tIoU {result.tiou[t_index]:.2f}",
    )
    ax_ap.axvline(
        100 * result.average_mAP,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"average mAP {100 * result.average_mAP:.2f}",
    )
    ax_ap.set_yticks(y, [result.class_names[c] for c in bars], fontsize=8)
    ax_ap.set_ylim(len(bars) - 0.5, -0.5)  # best class at the top
    ax_ap.set_xlim(0, 100)
    ax_ap.set_xlabel("AP (%)")
    tious = ", ".join(f"{t:.2f}" for t in result.tiou)
    ax_ap.set_title(f"per-class AP, tIoU {{{tious}}}{note}", fontsize=10)
    ax_ap.grid(axis="x", color="#eeeeee")
    ax_ap.set_axisbelow(True)
    ax_ap.legend(fontsize=8, loc="lower right")
    mAP = ", ".join(f"{t:.2f}: {100 * m:.1f}" for t, m in zip(result.tiou, result.mAP))
    fig.suptitle(f"{title}mAP (%) by tIoU {mAP}; average {100 * result.average_mAP:.2f}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------
# command line


def _load_json(path: str, kind: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {kind} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{kind} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{kind} {path} must hold a JSON object")
    return data


def ground_truth_source(args: argparse.Namespace) -> tuple[Optional[str], list[str], list[float]]:
    """(annotation JSON or None, split, tIoU set) from --config or --gt/--split/--tious."""
    if args.config:
        from libs.core.config import load_config

        cfg = load_config(args.config)
        return cfg.dataset.json_file, list(cfg.dataset.val_split), list(cfg.dataset.tiou_thresholds)
    return args.gt, args.split, args.tious


def _timeline_videos(results: dict, database: dict, args) -> list[str]:
    if args.videos:
        return list(args.videos)
    ids = list(results)
    if database and args.split:
        wanted = {s.lower() for s in args.split}
        ids = [
            v for v in ids if str(database.get(v, {}).get("subset", "")).lower() in wanted
        ] or ids
    return ids[: args.max_videos]


def _gt_entries(video: dict) -> list[dict]:
    return [{"label": a["label"], "segment": a["segment"]} for a in video.get("annotations", [])]


def _named(entries: list[dict], id_names: dict[int, str]) -> list[dict]:
    """Integer labels -> the annotation JSON's class names where it has them."""
    return [
        dict(e, label=id_names.get(e["label"], e["label"])) if isinstance(e["label"], int) else e
        for e in entries
    ]


def run_timeline(args: argparse.Namespace) -> int:
    results_file = _load_json(args.results, "results file")
    results = results_file.get("results")
    if not isinstance(results, dict):
        raise ValueError(f"results file {args.results} has no 'results' object")
    gt_json, split, _ = ground_truth_source(args)
    args.split = split
    database = _load_json(gt_json, "annotation JSON").get("database", {}) if gt_json else {}
    id_names = {
        int(a["label_id"]): a["label"]
        for v in database.values()
        for a in v.get("annotations", [])
        if "label_id" in a
    }
    info = results_file.get("video_info", {})
    written = []
    for vid in _timeline_videos(results, database, args):
        if vid not in results and vid not in database:
            raise ValueError(f"video '{vid}' is neither in {args.results} nor in the annotations")
        dets = _named(results.get(vid, []), id_names)
        gt = _gt_entries(database.get(vid, {}))
        duration = database.get(vid, {}).get("duration") or info.get(vid, {}).get("duration")
        if not duration:  # no metadata: the last segment end
            duration = max([e["segment"][1] for e in gt + dets] + [1.0])
        out = Path(args.out_dir) / f"{safe_name(vid)}.png"
        written.append(
            plot_timeline(
                vid, float(duration), gt, dets, out, top_k=args.top_k, min_score=args.min_score
            )
        )
    for path in written:
        print(f"timeline: {path}")
    return 0


def run_pr(args: argparse.Namespace) -> int:
    gt_json, split, tious = ground_truth_source(args)
    if not gt_json:
        raise ValueError("pr needs ground truth: give --config CONFIG or --gt ANNOTATIONS.json")
    if not any(abs(args.tiou - t) < 1e-9 for t in tious):
        raise ValueError(f"--tiou {args.tiou} is not in the tIoU set {tious}")
    results = _load_json(args.results, "results file")
    evaluator = DetectionMAP(gt_json, split, tious)
    result = evaluator.evaluate(results)
    curves = pr_curves(evaluator, results, args.tiou)
    num_gt = np.bincount(evaluator.gt.class_idx, minlength=evaluator.gt.num_classes)  # [C]
    out = plot_pr(result, curves, num_gt, args.tiou, args.out, title=f"{Path(args.results).name}: ")
    print(f"pr: {out}")
    return 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("results", help="ActivityNet results JSON")
    common.add_argument("--config", help="take the annotation JSON, val split and tIoU set from it")
    common.add_argument("--gt", help="annotation JSON (instead of --config)")
    common.add_argument("--split", nargs="+", default=["validation"], help="subset(s) of --gt")
    common.add_argument(
        "--tious",
        nargs="+",
        type=float,
        default=[0.3, 0.4, 0.5, 0.6, 0.7],
        help="tIoU set with --gt (default: %(default)s)",
    )
    tl = sub.add_parser("timeline", parents=[common], help="one PNG per video: GT + top detections")
    tl.add_argument("--videos", nargs="+", help="video ids (default: the first --max-videos)")
    tl.add_argument("--max-videos", type=int, default=10)
    tl.add_argument("--top-k", type=int, default=10, help="detections drawn per video")
    tl.add_argument("--min-score", type=float, default=0.0)
    tl.add_argument("--out-dir", default="timelines", help="folder for <video id>.png")
    pr = sub.add_parser("pr", parents=[common], help="PR curves + per-class AP bar chart")
    pr.add_argument("--tiou", type=float, default=0.5, help="tIoU of the PR curves")
    pr.add_argument("--out", default="pr.png")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_timeline(args) if args.command == "timeline" else run_pr(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
