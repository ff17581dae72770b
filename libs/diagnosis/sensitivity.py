"""DETAD's sensitivity analysis: average-mAP_N of the ground truth of each characteristic bucket.

Run on all predictions (minimum normalised precision 0). For a bucket, each class with ground
truth in it is scored on that ground truth only: its predictions (score order) are kept when, at
every threshold, they are unmatched or matched to ground truth of the bucket; predictions matched
elsewhere are left out, not counted as false positives. AP_N uses the bucket's count of the
class and DETAD's global average instances per class. The bucket's value is the mean over those
classes of the mean AP_N over thresholds; None when the bucket has no ground truth (DETAD: NaN).
A class with ground truth in the bucket but no prediction counts with AP 0 (DETAD crashes).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from libs.diagnosis.characteristics import Bins
from libs.diagnosis.inputs import DiagnosisInputs
from libs.diagnosis.matching import class_rows, descending_pandas, normalized_ap
from libs.diagnosis.runs import Run


def score_order(inp: DiagnosisInputs, run: Run) -> list[np.ndarray]:
    """Per class: positions into ``run.rows`` in ``sort_values(score, desc)`` order."""
    scores = inp.pred_scores[run.rows]  # [n]
    per_class = class_rows(inp.pred_class[run.rows], inp.num_classes)
    return [pos[descending_pandas(scores[pos])] for pos in per_class]


def bucket_values(
    inp: DiagnosisInputs, run: Run, ordered: list[np.ndarray], buckets: np.ndarray,
    labels: list[str],
) -> dict[str, Optional[float]]:  # fmt: skip
    """Average-mAP_N per bucket label for one characteristic (buckets [G], -1: none);
    ``ordered``: `score_order` of ``run``."""
    m = run.matched  # [T, n]
    matched_bucket = np.where(m >= 0, buckets[m.clip(min=0)], -2)  # [T, n]
    out: dict[str, Optional[float]] = {}
    for k, label in enumerate(labels):
        n_bc = np.bincount(inp.gt_class[buckets == k], minlength=inp.num_classes)  # [C]
        if n_bc.sum() == 0:
            out[label] = None
            continue
        keep = ((m < 0) | (matched_bucket == k)).all(axis=0)  # [n]
        ap = np.full(inp.num_classes, np.nan)  # [C]
        for c in np.flatnonzero(n_bc).tolist():
            pos = ordered[c][keep[ordered[c]]]
            tp = m[:, pos] >= 0  # [T, n_c]
            ap[c] = normalized_ap(tp, int(n_bc[c]), inp.average_num_instance_per_class)[0].mean()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[label] = float(np.nanmean(ap))
    return out


def sensitivity_analysis(inp: DiagnosisInputs, run: Run, bins: Bins) -> dict:
    """``{"base": average-mAP_N, characteristic: {bucket: value or None}}``; ``run`` is the
    evaluation of all predictions with minimum normalised precision 0."""
    out: dict = {"base": run.average_mAP}
    ordered = score_order(inp, run)
    for name, (_, labels) in bins.items():
        out[name] = bucket_values(inp, run, ordered, inp.buckets[name], labels)
    return out
