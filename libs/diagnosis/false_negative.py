"""DETAD's false-negative analysis: the fraction of ground truth missed, per characteristic bucket.

Run on all predictions with DETAD's ``minimum_normalized_precision_threshold_for_detection``
0.05: a true positive found where the class's running normalised precision is <= 0.05 is
discarded first (`matching.normalized_ap`). A ground truth is missed at tIoU t when no
remaining prediction matches it; the rate of a bucket is missed / ground truth of the bucket,
averaged over the tIoU thresholds. A bucket without ground truth is None (DETAD leaves it out).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from libs.diagnosis.characteristics import Bins
from libs.diagnosis.inputs import DiagnosisInputs
from libs.diagnosis.runs import Run, rescore

FN_MIN_PRECISION = 0.05


def missed(run: Run, num_gt: int) -> np.ndarray:
    """[T, G] bool: ground truth matched by no prediction of ``run`` at each threshold."""
    hit = np.zeros((len(run.matched), num_gt + 1), dtype=bool)  # [T, G + 1], column G: -1
    t_idx = np.repeat(np.arange(len(run.matched)), run.matched.shape[1])
    hit[t_idx, run.matched.reshape(-1)] = True  # -1 lands in the spare last column
    return ~hit[:, :num_gt]


def rates(
    missing: np.ndarray, buckets: np.ndarray, labels: list[str]
) -> dict[str, Optional[float]]:
    """False-negative rate per bucket label: missing [T, G] bool, buckets [G] (-1: none)."""
    counts = np.bincount(buckets[buckets >= 0], minlength=len(labels))  # [K]
    total = int(counts.sum())
    out: dict[str, Optional[float]] = {}
    for k, label in enumerate(labels):
        if counts[k] == 0:
            out[label] = None
            continue
        in_k = buckets == k
        # DETAD divides by (count / total) * total, summed over thresholds then / T
        per_t = [int(m[in_k].sum()) / ((counts[k] / total) * total) for m in missing]
        acc = per_t[0]
        for r in per_t[1:]:
            acc += r
        out[label] = float(acc / len(per_t))
    return out


def false_negative_analysis(inp: DiagnosisInputs, run_all: Run, bins: Bins) -> dict:
    """``{characteristic: {bucket: rate or None}}``; ``run_all``: the evaluation of all
    predictions with minimum normalised precision 0 (rescored here with `FN_MIN_PRECISION`)."""
    run = rescore(inp, run_all, FN_MIN_PRECISION)
    missing = missed(run, len(inp.gt_class))  # [T, G]
    return {name: rates(missing, inp.buckets[name], labels) for name, (_, labels) in bins.items()}
