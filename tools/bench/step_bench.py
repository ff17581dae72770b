"""A full training step and an inference pass of each THUMOS config, with achieved GFLOP/s.

    python tools/benchmark.py step [--configs A.yaml B.yaml] [--batch 2] [--length 2304]
                                   [--amp none|bf16|fp16] [--rounds 3] [--gemm-size N]

The training step is the engine's `train_step` (forward, losses, backward, clip, AdamW, LR
schedule, EMA) on a synthetic batch of the config's size (input_dim x length, 3 GT actions per
video); inference is the model's eval forward (decoding included, NMS excluded). FLOPs come from
`torch.utils.flop_counter.FlopCounterMode` and cover the ops it knows (GEMMs, convolutions,
attention); the selective scan is a custom op and is not counted, so the mamba blocks' GFLOP/s
are a lower bound. "vs GEMM" divides by the rate of one big fp32 matmul measured in the same
process: the fraction of the machine's dense peak a step achieves.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from libs.core.config import load_config
from libs.core.structures import VideoSample
from libs.datasets.collate import collate
from libs.engine.amp import autocast
from libs.engine.ema import ModelEma
from libs.engine.optim import build_optimizer
from libs.engine.scheduler import build_scheduler
from libs.engine.train_loop import TrainState, train_step
from libs.modeling import build_model

CONFIGS = [f"configs/thumos_internvideo2_6b_{b}.yaml" for b in ("winattn", "vim", "dbm")]


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=2304, help="features per video")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gemm-size", type=int, default=0, help="default 8192 on GPU, 2048 on CPU")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], rounds: int, device: torch.device) -> float:
    """Minimum wall time in seconds over `rounds` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_rate(n: int, device: torch.device, rounds: int) -> float:
    """Achieved fp32 GFLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = _time(lambda: torch.mm(a, b), rounds, device)
    return 2 * n**3 / seconds / 1e9


def _batch(cfg, batch: int, length: int, size_divisor: int, device: torch.device):
    """A synthetic training batch: random features, 3 actions per video (grid units)."""
    samples = []
    for i in range(batch):
        segments = torch.tensor([[0.1, 0.2], [0.4, 0.45], [0.6, 0.9]]) * length  # [3, 2]
        labels = torch.tensor([0, 1, 2]) % cfg.dataset.num_classes  # [3]
        samples.append(
            VideoSample(f"v{i}", torch.randn(cfg.dataset.input_dim, length), segments, labels,
                        fps=30.0, duration=length * 4 / 30.0, feat_stride=4, feat_num_frames=16)
        )  # fmt: skip
    return collate(samples, max(length, cfg.dataset.max_seq_len), size_divisor, True).to(device)


def _flops(fn: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def bench_config(path: str, args, device: torch.device) -> dict:
    cfg = load_config(path, [f"dataset.max_seq_len={args.length}", f"opt.amp={args.amp}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.train, cfg.test).to(device)
    batch = _batch(cfg, args.batch, args.length, model.size_divisor, device)
    optimizer = build_optimizer(model, cfg.opt)
    state = TrainState(model, ModelEma(model), optimizer, build_scheduler(optimizer, cfg.opt, 100))
    state.amp = args.amp
    state.scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None

    def step():
        model.train()
        train_step(state, batch, cfg.train.clip_grad_l2norm, 0, 0)

    def infer():
        model.eval()
        with torch.no_grad(), autocast(args.amp, device):
            model(batch)

    out = {"step_s": _time(step, args.rounds, device), "infer_s": _time(infer, args.rounds, device)}
    out["step_gflop"], out["infer_gflop"] = _flops(step) / 1e9, _flops(infer) / 1e9
    out["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    return out


def run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = args.gemm_size or (8192 if device.type == "cuda" else 2048)
    peak = gemm_rate(n, device, args.rounds)
    results = {"device": str(device), "gemm_gflops": peak, "gemm_size": n, "configs": {}}
    print(f"{device}, {torch.get_num_threads()} threads, amp {args.amp}, B={args.batch} "
          f"T={args.length}; fp32 GEMM {n}^3: {peak:.1f} GFLOP/s (min of {args.rounds})")  # fmt: skip
    head = ("config", "params M", "step ms", "GFLOP", "GFLOP/s", "vs GEMM", "infer ms", "GFLOP",
            "GFLOP/s", "vs GEMM")  # fmt: skip
    print(f"{head[0]:32s} " + " ".join(f"{h:>9s}" for h in head[1:]))
    for path in args.configs:
        r = bench_config(path, args, device)
        r["step_gflops"] = r["step_gflop"] / r["step_s"]
        r["infer_gflops"] = r["infer_gflop"] / r["infer_s"]
        results["configs"][path] = r
        name = path.rsplit("/", 1)[-1].removesuffix(".yaml")
        cells = (f"{r['params_m']:9.2f}", f"{1000 * r['step_s']:9.1f}", f"{r['step_gflop']:9.1f}",
                 f"{r['step_gflops']:9.1f}", f"{r['step_gflops'] / peak:9.2%}",
                 f"{1000 * r['infer_s']:9.1f}", f"{r['infer_gflop']:9.1f}",
                 f"{r['infer_gflops']:9.1f}", f"{r['infer_gflops'] / peak:9.2%}")  # fmt: skip
        print(f"{name:32s} " + " ".join(cells))
    return results
