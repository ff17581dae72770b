"""One DETAD evaluation run (`ActionDetectorDiagnosis.evaluate`) on a set of predictions.

DETAD builds a fresh diagnosis object for each analysis: the false-positive analysis on the
top ``limit_factor * N_c`` predictions of each class with minimum normalised precision 0, the
false-negative analysis on all predictions with 0.05, the sensitivity analysis on all with 0.
A `Run` holds what such an object computes: the matched ground truth of every prediction at
every tIoU and the normalised AP per (tIoU, class). The last two analyses see the same
predictions, hence the same matching: the false-negative run is the sensitivity run rescored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.diagnosis.inputs import DiagnosisInputs
from libs.diagnosis.matching import class_rows, nlargest, normalized_ap
from libs.evaluation.matching import class_rankings, match_gt, rank_in_class


@dataclass
class Run:
    """Predictions ``rows`` (DETAD's prediction DataFrame, in its row order) and their matches."""

    rows: np.ndarray  # [n] indices into the inputs' predictions
    matched: np.ndarray  # [T, n] matched GT row, -1 for none (after low-precision discarding)
    ap: np.ndarray  # [T, C] normalised AP
    rankings: list[np.ndarray]  # [C] positions into rows, AP ranking order of each class

    @property
    def average_mAP(self) -> float:
        """DETAD's ``self.mAP.mean()``: mean over tIoUs of the mean AP over classes."""
        return float(self.ap.mean(axis=1).mean())


def limit_rows(inp: DiagnosisInputs, factor: float) -> np.ndarray:
    """DETAD's ``_limit_prediction``: per class (class order), its ``int(N_c * factor)``
    highest-scoring predictions in ``nlargest`` order, concatenated. → [n] prediction rows."""
    per_class = class_rows(inp.pred_class, inp.num_classes)
    parts = []
    for c, rows in enumerate(per_class):
        n = int(int(inp.num_gt[c]) * factor)
        parts.append(rows[nlargest(inp.pred_scores[rows], n)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def evaluate_run(
    inp: DiagnosisInputs, rows: np.ndarray, thresholds: np.ndarray, min_precision: float
) -> Run:
    """Match predictions ``rows`` [n] at every threshold [T] and compute normalised AP [T, C]."""
    classes = inp.pred_class[rows]  # [n]
    rankings = class_rankings(classes, inp.pred_scores[rows], inp.num_classes)  # DETAD's too
    matched = match_gt(
        inp.pred_segments[rows], inp.pred_video[rows], classes, rank_in_class(rankings, len(rows)),
        inp.gt_segments, inp.gt_video, inp.gt_class, thresholds, inp.num_classes,
    )  # fmt: skip
    return _scored(inp, rows, matched, rankings, min_precision)


def rescore(inp: DiagnosisInputs, run: Run, min_precision: float) -> Run:
    """The run of the same predictions with another minimum normalised precision, without
    matching again (the matching does not depend on it). ``run`` must have been evaluated with
    min_precision 0, which discards nothing (a true positive's normalised precision is > 0)."""
    return _scored(inp, run.rows, run.matched.copy(), run.rankings, min_precision)


def _scored(
    inp: DiagnosisInputs, rows: np.ndarray, matched: np.ndarray, rankings: list[np.ndarray],
    min_precision: float,
) -> Run:  # fmt: skip
    """The `Run` of ``rows`` [n] matched as ``matched`` [T, n] (modified in place: true
    positives discarded below ``min_precision`` lose their match), with normalised AP [T, C]."""
    ap = np.zeros((len(matched), inp.num_classes))  # [T, C]
    avg_n, num_gt = inp.average_num_instance_per_class, inp.num_gt
    for c, ranked in enumerate(rankings):
        if len(ranked) == 0:  # DETAD: AP 0 for a class without predictions
            continue
        tp = matched[:, ranked] >= 0  # [T, n_c]
        ap[:, c], kept = normalized_ap(tp, int(num_gt[c]), avg_n, min_precision)
        sub = matched[:, ranked]
        sub[tp & ~kept] = -1  # discarded true positives lose their match
        matched[:, ranked] = sub
    return Run(rows=rows, matched=matched, ap=ap, rankings=rankings)
