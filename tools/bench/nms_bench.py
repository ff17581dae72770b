"""NMS benchmark: the C++ kernels (libs._C) against their pure-PyTorch twins, on CPU.

    python tools/benchmark.py nms [--repeats 5] [--classes 20] [--topk 2000]

Input is a synthetic THUMOS-like video at the paper's test settings: a 2304-step grid, a 6-level
pyramid (strides 1..32), 20 classes, the top `--topk` candidates per level (11,440 in total by
default), clustered around 15 ground-truth actions. Cases:
    batched_soft  batched_nms, per-class Gaussian soft-NMS (THUMOS: iou 0.1, sigma 0.5, min 0.001)
    batched_hard  the same with hard NMS
    soft_nms_1d   one soft-NMS call on the largest class
    nms_1d        one hard-NMS call on all candidates (class-agnostic, the worst case)
"""

import argparse
import statistics
import time
from typing import Callable

import torch

from libs.ops import _ext
from libs.ops.nms import batched_nms, nms_1d, soft_nms_1d

REG_RANGES = [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 128)]  # grid units per level


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of the C++ kernels (median)"
    )
    parser.add_argument(
        "--torch-repeats", type=int, default=1, help="timed runs of the PyTorch twins"
    )
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--topk", type=int, default=2000, help="candidates kept per pyramid level")
    parser.add_argument("--seq-len", type=int, default=2304)
    parser.add_argument("--seed", type=int, default=0)


def make_candidates(
    seq_len: int, classes: int, topk: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre-NMS candidates like the detector's: segs [N, 2] (grid units), scores [N], labels [N]."""
    g = torch.Generator().manual_seed(seed)
    gt_start = torch.rand(15, generator=g) * (seq_len - 200)
    gt_end = gt_start + 10 + torch.rand(15, generator=g) * 190  # [15] actions of 10-200 steps
    gt_cls = torch.randint(0, classes, (15,), generator=g)
    all_segs, all_scores, all_labels = [], [], []
    for level, (lo, hi) in enumerate(REG_RANGES):
        t = torch.arange(0, seq_len, 2**level, dtype=torch.float32)  # [T_l] point positions
        logits = torch.randn(len(t), classes, generator=g) * 1.5 - 6  # [T_l, C] background
        inside = (t[:, None] >= gt_start) & (t[:, None] <= gt_end)  # [T_l, 15]
        for k in range(15):  # boost the action's class at points inside it
            logits[inside[:, k], gt_cls[k]] += 5 + torch.randn(int(inside[:, k].sum()), generator=g)
        probs = torch.sigmoid(logits).flatten()  # [T_l * C], point-major as in the detector
        sorted_probs, idx = probs.sort(descending=True)
        keep = idx[: min(topk, int((sorted_probs > 0.001).sum()))]  # [K_l]: > pre_nms_thresh, top-k
        pts, cls = keep // classes, keep % classes
        off = lo + torch.rand(len(keep), 2, generator=g) * (
            hi - lo
        )  # [K_l, 2] left/right distances
        all_segs.append(torch.stack([t[pts] - off[:, 0], t[pts] + off[:, 1]], dim=1))
        all_scores.append(probs[keep])
        all_labels.append(cls)
    return torch.cat(all_segs), torch.cat(all_scores), torch.cat(all_labels)


def _time_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (first call also logs the backend choice)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _cases(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """name -> function(backend) running one THUMOS-setting NMS call."""
    big = labels == torch.bincount(labels).argmax()  # the largest class
    thumos = dict(iou_threshold=0.1, min_score=0.001, max_seg_num=200, sigma=0.5, multiclass=True)
    return {
        "batched_soft": lambda b: batched_nms(
            segs, scores, labels, method="soft", backend=b, **thumos
        ),
        "batched_hard": lambda b: batched_nms(
            segs, scores, labels, method="hard", backend=b, **thumos
        ),
        "soft_nms_1d": lambda b: soft_nms_1d(segs[big], scores[big], 0.1, 0.5, 0.001, 2, backend=b),
        "nms_1d": lambda b: nms_1d(segs, scores, 0.1, backend=b),
    }


def run(args: argparse.Namespace) -> dict:
    """Time every case with both backends; print a table; return {case: {ms and ratio}}."""
    segs, scores, labels = make_candidates(args.seq_len, args.classes, args.topk, args.seed)
    has_ext = _ext._C is not None and hasattr(_ext._C, "nms_1d")
    largest = int(torch.bincount(labels).max())
    built = "yes" if has_ext else "NOT BUILT (C++ column is nan)"
    print(f"{len(segs)} candidates, {args.classes} classes, largest class {largest}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, libs._C {built}")
    print(f"{'case':<14}{'C++ ms':>10}{'torch ms':>12}{'speed-up':>10}")
    results = {}
    for name, fn in _cases(segs, scores, labels).items():
        torch_ms = _time_ms(lambda: fn("torch"), args.torch_repeats)
        ext_ms = _time_ms(lambda: fn("ext"), args.repeats) if has_ext else float("nan")
        results[name] = {"ext_ms": ext_ms, "torch_ms": torch_ms, "speedup": torch_ms / ext_ms}
        print(f"{name:<14}{ext_ms:>10.2f}{torch_ms:>12.1f}{torch_ms / ext_ms:>9.1f}x")
    return results
