"""Precision-recall curves at one tIoU and per-class AP bars, from the project's evaluator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from libs.evaluation import DetectionMAP, EvalResult
from libs.evaluation.matching import class_rankings, match_predictions, rank_in_class
from libs.viz import pyplot, save

MAX_PR_CURVES = 10  # classes drawn in the PR panel (those with the most GT segments)
MAX_AP_BARS = 40  # more classes: the 20 best and the 20 worst


def pr_curves(
    evaluator: DetectionMAP, results: Any, tiou: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class of `evaluator.class_names`: (recall [n], precision envelope [n]) at one tIoU.

    Uses the evaluator's own ranking and greedy matching, so the area under each curve is the
    class's AP at `tiou` (VOC-2011 interpolation: precision made non-increasing from the right).
    """
    preds = evaluator.parse(results)
    gt, num_classes = evaluator.gt, evaluator.gt.num_classes
    rankings = class_rankings(preds.labels, preds.scores, num_classes)
    tp = match_predictions(
        preds.segments, evaluator.gt_video_index(preds), preds.labels,
        rank_in_class(rankings, len(preds.labels)),
        gt.segments, gt.video_idx, gt.class_idx, np.array([tiou]), num_classes,
    )[0]  # [N]  # fmt: skip
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
    plt = pyplot()
    t_index = int(np.argmin(np.abs(np.asarray(result.tiou) - tiou)))
    bars, note = _bar_classes(result.ap.mean(axis=0))
    fig, (ax_pr, ax_ap) = plt.subplots(
        1, 2, figsize=(14, max(5.0, 1.5 + 0.28 * len(bars))), gridspec_kw={"width_ratios": [1, 1]}
    )
    _draw_pr_panel(ax_pr, result, curves, num_gt, t_index)
    _draw_ap_panel(ax_ap, result, bars, note, t_index)
    mAP = ", ".join(f"{t:.2f}: {100 * m:.1f}" for t, m in zip(result.tiou, result.mAP))
    fig.suptitle(f"{title}mAP (%) by tIoU {mAP}; average {100 * result.average_mAP:.2f}")
    fig.tight_layout()
    return save(fig, plt, out)


def _draw_pr_panel(ax, result: EvalResult, curves, num_gt: np.ndarray, t_index: int) -> None:
    """PR staircases of the classes with the most GT segments."""
    drawn = np.argsort(-num_gt, kind="stable")[:MAX_PR_CURVES]
    for c in drawn.tolist():
        recall, precision = curves[c]
        hit = np.diff(np.r_[0.0, recall]) > 0  # true positives: where the recall steps up
        recall, precision = recall[hit], precision[hit]  # the staircase whose area is the AP
        if not len(recall):  # no true positive (or no detection): precision 0 at every recall
            recall, precision = np.array([1.0]), np.array([0.0])
        ax.plot(np.r_[0.0, recall], np.r_[precision[:1], precision], drawstyle="steps-pre",
                label=f"{result.class_names[c]} (AP {100 * result.ap[t_index, c]:.1f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    left_out = f", {len(num_gt) - len(drawn)} classes not drawn" if len(num_gt) > len(drawn) else ""
    ax.set_title(f"precision-recall at tIoU {result.tiou[t_index]:.2f}{left_out}")
    ax.grid(color="#eeeeee")
    ax.legend(fontsize=8, loc="lower left")


def _draw_ap_panel(ax, result: EvalResult, bars: list[int], note: str, t_index: int) -> None:
    """Per-class AP bars (averaged over the tIoU set), AP at one tIoU as dots, the average mAP."""
    ap_avg = result.ap.mean(axis=0)  # [C]
    y = np.arange(len(bars))
    ax.barh(y, 100 * ap_avg[bars], color="#4c72b0", label="AP averaged over the tIoU set")
    ax.scatter(100 * result.ap[t_index, bars], y, color="#dd8452", zorder=3, s=14,
               label=f"AP at tIoU {result.tiou[t_index]:.2f}")
    ax.axvline(100 * result.average_mAP, color="black", linestyle="--", linewidth=1,
               label=f"average mAP {100 * result.average_mAP:.2f}")
    ax.set_yticks(y, [result.class_names[c] for c in bars], fontsize=8)
    ax.set_ylim(len(bars) - 0.5, -0.5)  # best class at the top
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)")
    tious = ", ".join(f"{t:.2f}" for t in result.tiou)
    ax.set_title(f"per-class AP, tIoU {{{tious}}}{note}", fontsize=10)
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="lower right")
