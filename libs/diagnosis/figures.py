"""DETAD's three figures as PNG, drawn with matplotlib's object API (no pyplot state, no LaTeX).

matplotlib is the ``[viz]`` extra: it is imported when a figure is drawn, and its absence is a
clear error that says how to install it (`pip install matplotlib`, which always works; a bare
`pip install -e .[viz]` does not, see INSTALL.md) or how to skip the figures.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from libs.diagnosis.false_positive import ERROR_TYPES
from libs.utils.io import atomic_write

FP_COLORS = ["#33a02c", "#b2df8a", "#1f78b4", "#fb9a99", "#e31a1c", "#a6cee3"]  # DETAD's
CHAR_COLORS = ["#386cb0", "#f0027f", "#bf5b17", "#7fc97f", "#beaed4", "#fdc086"]
FIGURES = {
    "false_positive": "false_positive_analysis.png",
    "false_negative": "false_negative_analysis.png",
    "sensitivity": "sensitivity_analysis.png",
}


def _figure(size: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "the diagnosis figures need matplotlib: pip install matplotlib, or skip them with "
            "--no-figures"
        ) from None
    return Figure(figsize=size, dpi=110, layout="constrained")


def _save(fig: Any, path: str) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def _pct(value: Optional[float]) -> float:
    return float("nan") if value is None else 100.0 * value


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.yaxis.grid(True, linestyle=":")
    ax.set_axisbelow(True)


def plot_false_positive(fp: dict, path: str) -> None:
    """Left: error breakdown of the top-kG predictions (stacked %); right: gain per error type."""
    fig = _figure((11, 4.6))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    groups = list(fp["profile"])
    x = np.arange(len(groups))
    bottom = np.zeros(len(groups))
    for name, color in zip(ERROR_TYPES, FP_COLORS):
        vals = np.array([_pct((fp["profile"][g] or {}).get(name)) for g in groups])
        vals = np.nan_to_num(vals)
        left.bar(x, vals, 0.8, bottom=bottom, color=color, label=name)
        bottom += vals
    for i, g in enumerate(groups):
        if fp["profile"][g] is None:
            left.annotate("empty", (i, 2), ha="center", rotation=90, fontsize=8, color="gray")
    left.set_xticks(x, groups)
    left.set_ylim(0, 100)
    left.set_xlabel("Top predictions")
    left.set_ylabel("Error breakdown (%)")
    left.set_title("False positive profile")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8)
    _style(left)
    names = list(fp["average_mAP_N_gain"])
    gains = [100.0 * fp["average_mAP_N_gain"][n] for n in names]
    bars = right.bar(np.arange(len(names)), gains, color=FP_COLORS[1:])
    right.bar_label(bars, fmt="%.1f", fontsize=8)
    right.set_xticks(np.arange(len(names)), [n.replace(" Err", "") for n in names],
                     rotation=30, ha="right", fontsize=8)  # fmt: skip
    right.set_ylabel("Average-mAP$_N$ improvement (%)")
    right.set_title("Removing error impact")
    _style(right)
    _save(fig, path)


def _bucket_bars(ax: Any, per_char: dict, skip: tuple = ()) -> list[float]:
    """Bars of ``{characteristic: {bucket: fraction or None}}`` grouped by characteristic."""
    x, ticks, centres, heights = 0, [], [], []
    for i, (name, buckets) in enumerate((k, v) for k, v in per_char.items() if k not in skip):
        xs = np.arange(x, x + len(buckets))
        vals = np.array([_pct(v) for v in buckets.values()])
        bars = ax.bar(xs, np.nan_to_num(vals), color=CHAR_COLORS[i % len(CHAR_COLORS)])
        ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.1f}" for v in vals], fontsize=8)
        ticks += list(zip(xs.tolist(), buckets))
        centres.append((xs.mean(), name))
        heights += [v for v in vals if not np.isnan(v)]
        if x:
            ax.axvline(x - 1, color="gray", linestyle=":", linewidth=1)
        x += len(buckets) + 1
    ax.set_xticks([t for t, _ in ticks], [b for _, b in ticks])
    for cx, name in centres:
        ax.annotate(name, (cx, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom")
    _style(ax)
    return heights


def plot_false_negative(fn: dict, path: str) -> None:
    """False-negative rate (%) per characteristic bucket."""
    fig = _figure((max(6.0, 0.55 * sum(len(v) + 1 for v in fn.values())), 3.8))
    ax = fig.subplots()
    _bucket_bars(ax, fn)
    ax.set_ylim(0, 110)
    ax.set_ylabel("False negative (%)")
    _save(fig, path)


def plot_sensitivity(sens: dict, path: str) -> None:
    """Left: average-mAP_N (%) per bucket with the overall value dashed; right: the lowest and
    highest bucket of each characteristic relative to the overall value."""
    fig = _figure((13, 4.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    base = 100.0 * sens["base"]
    _bucket_bars(left, sens, skip=("base",))
    left.axhline(base, color="k", linestyle="--", linewidth=1, label=f"overall {base:.2f}")
    left.set_ylim(0, 105)
    left.set_ylabel("Average-mAP$_N$ (%)")
    left.legend(loc="upper left", fontsize=9, frameon=False)
    names = [k for k in sens if k != "base"]
    for i, name in enumerate(names):
        vals = [100.0 * v / base for v in sens[name].values() if v is not None] if base else []
        if vals:
            lo, hi = min(vals), max(vals)
            right.plot([i, i], [lo, hi], "-", marker="_", markersize=20, linewidth=6,
                       color=CHAR_COLORS[i % len(CHAR_COLORS)])  # fmt: skip
            right.annotate(f"{lo:.2f}", (i + 0.1, lo), fontsize=8)
            right.annotate(f"{hi:.2f}", (i + 0.1, hi), fontsize=8)
    right.axhline(1.0, color="k", linestyle="--", linewidth=1)
    right.set_xticks(np.arange(len(names)), names, rotation=45, ha="right")
    right.set_xlim(-0.7, len(names) - 0.3)
    right.set_ylabel("Average-mAP$_N$ relative change")
    _style(right)
    _save(fig, path)


def write_figures(diagnosis: dict, out_dir: str) -> dict[str, str]:
    """The three PNGs of a ``diagnose`` result → {analysis: path}."""
    paths = {k: os.path.join(out_dir, name) for k, name in FIGURES.items()}
    plot_false_positive(diagnosis["false_positive"], paths["false_positive"])
    plot_false_negative(diagnosis["false_negative"], paths["false_negative"])
    plot_sensitivity(diagnosis["sensitivity"], paths["sensitivity"])
    return paths
