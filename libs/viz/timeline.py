"""One video on a time axis: ground truth (upper band) over its top detections (lower band)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from libs.viz import pyplot, save

GT_COLOR = "#2e7d32"  # ground truth: dark green
DET_CMAP = "Blues"  # detections: light (low score) -> dark blue (high score)


def _det_colormap(plt):
    """The detection colormap without its near-white start, so a low score stays visible."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(plt.get_cmap(DET_CMAP)(np.linspace(0.25, 1.0, 256)))


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


def _draw_gt(ax, r: int, spans: list[tuple[float, float]]) -> None:
    """Row r's GT segments in the upper band; overlapping ones side by side, not merged."""
    gt_lanes = _lanes(spans)
    gt_height = 0.34 / (max(gt_lanes, default=0) + 1)
    for (s, e), lane in zip(spans, gt_lanes):
        ax.broken_barh([(s, e - s)], (r + 0.08 + lane * gt_height, gt_height * 0.9), color=GT_COLOR)


def _draw_detections(ax, r: int, row_dets: list[dict], band: tuple[float, float], cmap, duration: float) -> None:
    """Row r's detections (by descending score) in `band` = (top offset, height), score on wide bars."""
    det_top, det_span = band
    lanes = _lanes([tuple(d["segment"]) for d in row_dets])
    height = det_span / (max(lanes, default=0) + 1)
    for d, lane in zip(row_dets, lanes):
        (s, e), score = d["segment"], float(d["score"])
        y = r + det_top + lane * height
        ax.broken_barh([(s, e - s)], (y, height * 0.9), color=cmap(score), edgecolor="#08306b", linewidth=0.5)
        if e - s > 0.04 * duration:  # room for the score
            ax.text((s + e) / 2, y + height * 0.45, f"{score:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if score > 0.5 else "black")


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
    plt = pyplot()
    dets = sorted((d for d in detections if d["score"] >= min_score), key=lambda d: -d["score"])
    dets = dets[:top_k]
    rows = _row_classes(gt, dets)
    cmap = _det_colormap(plt)
    fig, ax = plt.subplots(figsize=(12, 1.6 + 0.7 * max(len(rows), 1)))
    # the y axis points down: in row r, GT fills [r + 0.08, r + 0.42], detections the band below
    band = (0.5, 0.44) if gt else (0.08, 0.84)
    for r, name in enumerate(rows):
        _draw_gt(ax, r, [tuple(g["segment"]) for g in gt if str(g["label"]) == name])
        _draw_detections(ax, r, [d for d in dets if str(d["label"]) == name], band, cmap, duration)
        if r:
            ax.axhline(r, color="#cccccc", linewidth=0.8)
    if not rows:
        ax.text(0.5, 0.5, "no ground truth and no detections", transform=ax.transAxes, ha="center", va="center")
    _timeline_axes(ax, rows, duration)
    shown = f"top {len(dets)} detections" + (f" (score >= {min_score:g})" if min_score > 0 else "")
    what = f"{len(gt)} ground-truth segments" if gt else "no ground truth"
    ax.set_title(f"{video_id}  ({duration:.1f} s): {what}, {shown}", pad=24)
    _timeline_legend(fig, ax, cmap, bool(gt))
    return save(fig, plt, out, bbox_inches="tight")


def _timeline_axes(ax, rows: list[str], duration: float) -> None:
    ax.set_xlim(0, duration)
    ax.set_ylim(max(len(rows), 1), 0)  # first class at the top
    ax.set_yticks([r + 0.5 for r in range(len(rows))], rows)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("class")
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)


def _timeline_legend(fig, ax, cmap, with_gt: bool) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    handles = [Patch(color=GT_COLOR, label="ground truth (upper band)")] if with_gt else []
    band = "lower band, " if with_gt else ""
    handles.append(Patch(color=cmap(0.75), label=f"detection ({band}shade = score)"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False, fontsize=8,
              borderaxespad=0.2)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, pad=0.01, fraction=0.03)
    bar.set_label("detection score")
