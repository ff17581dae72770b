"""Benchmark: vectorised `DetectionMAP` vs a straightforward per-prediction loop.

Builds synthetic predictions for the GT of one split (default: THUMOS-14 test, 212 videos,
20 classes): jittered copies of GT segments, wrong-class and random segments, with scores on a
coarse grid so that ties occur. Both implementations start from the same parsed arrays; the
loop below is our own slow reference of the ActivityNet algorithm (not the official code).

    python tools/benchmark.py eval [--preds-per-video 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np

try:
    import libs  # noqa: F401
except ImportError:  # run directly as `python tools/bench/eval_bench.py`
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from libs.core.config import EvalCfg
from libs.evaluation import DetectionMAP, build_evaluator
from libs.evaluation.matching import average_precision

DEFAULT_GT = str(Path(__file__).resolve().parents[2] / "data/thumos/annotations/thumos14.json")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", default=DEFAULT_GT, help="annotation JSON (default: THUMOS-14)")
    parser.add_argument("--split", default="test", help="subset to evaluate (default: test)")
    parser.add_argument(
        "--preds-per-video", type=int, default=30, help="synthetic predictions per video"
    )
    parser.add_argument("--tiou", nargs="+", type=float, default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument(
        "--rounds", type=int, default=5, help="timing rounds; the minimum is reported"
    )
    parser.add_argument("--seed", type=int, default=0)


def synthetic_results(evaluator: DetectionMAP, per_video: int, seed: int) -> dict:
    """ActivityNet results dict with ``per_video`` predictions on every GT video of the split."""
    rng = np.random.default_rng(seed)
    gt = evaluator.gt
    results = {}
    for v, vid in enumerate(gt.video_ids):
        segs, cls = gt.segments[gt.video_idx == v], gt.class_idx[gt.video_idx == v]  # [g, 2], [g]
        entries = []
        for _ in range(per_video):
            kind = rng.random()
            if len(segs) and kind < 0.7:  # jittered GT, sometimes of the wrong class
                j = rng.integers(len(segs))
                s, e = segs[j] + rng.normal(0, 0.15 * (segs[j, 1] - segs[j, 0]) + 0.1, 2)
                c = cls[j] if kind < 0.6 else rng.integers(gt.num_classes)
            else:  # background: a random segment anywhere in the video's GT range
                s = rng.uniform(0, segs[:, 1].max() if len(segs) else 100.0)
                e, c = s + rng.exponential(5.0), rng.integers(gt.num_classes)
            entries.append(
                {
                    "label": gt.class_names[int(c)],
                    "segment": [float(s), float(max(e, s))],
                    "score": round(float(rng.random()), 2),
                }
            )
        results[vid] = entries
    return {"version": "VERSION 1.3", "results": results, "external_data": {"used": False}}


def _walk(tiou: np.ndarray, cand: np.ndarray, thr: float, lock_row: np.ndarray) -> bool:
    """One prediction at one threshold: greedy walk over its GTs by descending tIoU."""
    for j in tiou.argsort()[::-1]:
        if tiou[j] < thr:
            return False
        if lock_row[cand[j]]:
            continue
        lock_row[cand[j]] = True
        return True
    return False


def _voc_ap(tp: np.ndarray, num_gt: int) -> float:
    """VOC-2011 interpolated AP of one ranked 0/1 TP vector, written as plain loops."""
    tp_cum, fp_cum = np.cumsum(tp.astype(float)), np.cumsum(1.0 - tp)
    prec = np.concatenate([[0.0], tp_cum / (tp_cum + fp_cum), [0.0]])
    rec = np.concatenate([[0.0], tp_cum / float(num_gt), [1.0]])
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    changed = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[changed] - rec[changed - 1]) * prec[changed]))


def loop_average_precision(
    pred_segments,
    pred_video,
    pred_class,
    scores,
    gt_segments,
    gt_video,
    gt_class,
    thresholds,
    num_classes,
):
    """Per-class, per-prediction loop; same I/O as `libs.evaluation.matching.average_precision`."""
    ap = np.zeros((len(thresholds), num_classes))  # [T, C]
    for c in range(num_classes):
        rows = np.flatnonzero(pred_class == c)
        if len(rows) == 0:
            continue
        rows = rows[scores[rows].argsort()[::-1]]
        by_video: dict[int, list[int]] = {}
        for g in np.flatnonzero(gt_class == c):
            by_video.setdefault(int(gt_video[g]), []).append(g)
        lock = np.zeros((len(thresholds), len(gt_segments)), dtype=bool)
        tp = np.zeros((len(thresholds), len(rows)))
        for i, r in enumerate(rows):
            cand = np.array(by_video.get(int(pred_video[r]), []), dtype=np.int64)
            if pred_video[r] < 0 or len(cand) == 0:
                continue
            g, (ps, pe) = gt_segments[cand], pred_segments[r]
            inter = (np.minimum(pe, g[:, 1]) - np.maximum(ps, g[:, 0])).clip(0)
            with np.errstate(divide="ignore", invalid="ignore"):
                tiou = inter / ((g[:, 1] - g[:, 0]) + (pe - ps) - inter)
            for t, thr in enumerate(thresholds):
                tp[t, i] = _walk(tiou, cand, thr, lock[t])
        ap[:, c] = [_voc_ap(tp[t], int((gt_class == c).sum())) for t in range(len(thresholds))]
    return ap


def _best_ms(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best, out


def run(args: argparse.Namespace) -> dict:
    """Time the vectorised evaluator and the loop; check that they agree bit for bit."""
    protocol_evaluator = build_evaluator(EvalCfg(), args.gt, args.split, args.tiou)  # official protocol
    evaluator = protocol_evaluator.detection_map
    results = synthetic_results(evaluator, args.preds_per_video, args.seed)
    preds = evaluator.parse(results)
    arrays = (
        preds.segments,
        evaluator.gt_video_index(preds),
        preds.labels,
        preds.scores,
        evaluator.gt.segments,
        evaluator.gt.video_idx,
        evaluator.gt.class_idx,
        evaluator.thresholds,
        evaluator.gt.num_classes,
    )
    parse_ms, _ = _best_ms(lambda: evaluator.parse(results), args.rounds)
    fast_ms, fast_ap = _best_ms(lambda: average_precision(*arrays), args.rounds)
    full_ms, result = _best_ms(lambda: protocol_evaluator.evaluate(results), args.rounds)
    loop_ms, loop_ap = _best_ms(lambda: loop_average_precision(*arrays), 1)
    identical = bool(np.array_equal(fast_ap, loop_ap) and np.array_equal(fast_ap, result.ap))
    out = {
        "n_predictions": len(preds.scores),
        "n_videos": len(evaluator.gt.video_ids),
        "n_classes": evaluator.gt.num_classes,
        "n_tiou": len(evaluator.thresholds),
        "parse_ms": parse_ms,
        "vectorised_ms": fast_ms,
        "evaluate_ms": full_ms,
        "loop_ms": loop_ms,
        "speedup": loop_ms / fast_ms,
        "identical": identical,
        "average_mAP": result.average_mAP,
    }
    print(
        f"eval bench: {out['n_predictions']} predictions, {out['n_videos']} videos, "
        f"{out['n_classes']} classes, "
        f"{out['n_tiou']} tIoUs"
    )
    print(f"  parse results dict   {parse_ms:8.1f} ms")
    print(f"  vectorised AP        {fast_ms:8.1f} ms   (evaluate() end to end {full_ms:.1f} ms)")
    print(
        f"  per-prediction loop  {loop_ms:8.1f} ms   speed-up x{out['speedup']:.0f}, "
        f"identical: {identical}"
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(parser)
    run(parser.parse_args())
