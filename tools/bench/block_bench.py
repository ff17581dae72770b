"""One temporal block at THUMOS size: window attention (baseline) vs ViM vs DBM, forward and
forward + backward, in one process. `python tools/benchmark.py block`."""
import argparse
import time

import torch

from libs.modeling.blocks import BLOCKS

BLOCK_ARGS = {
    "window_attn": dict(window_size=19, n_head=4, drop_path=0.1),
    "vim": dict(d_state=16, d_conv=4, expand=2, drop_path=0.3),
    "dbm": dict(d_state=16, d_conv=4, expand=1, drop_path=0.3),
}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", nargs="+", default=list(BLOCK_ARGS), choices=list(BLOCK_ARGS))


def _time(fn, rounds: int) -> float:
    """Minimum wall time in ms over `rounds` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def _bench_block(name: str, args) -> dict:
    block = BLOCKS.build(name, dim=args.dim, stride=1, **BLOCK_ARGS[name]).train()
    x = torch.randn(args.batch, args.dim, args.length, requires_grad=True)  # [B, C, T]
    mask = torch.ones(args.batch, 1, args.length, dtype=torch.bool)
    mask[-1, :, args.length * 3 // 4:] = False  # one padded video, as in real batches

    def forward():
        with torch.no_grad():
            block(x, mask)

    def forward_backward():
        out, _ = block(x, mask)
        out.sum().backward()

    params = sum(p.numel() for p in block.parameters())
    return {"params": params, "fwd_ms": _time(forward, args.rounds), "fwd_bwd_ms": _time(forward_backward, args.rounds)}


def run(args) -> dict:
    torch.manual_seed(0)
    results = {name: _bench_block(name, args) for name in args.blocks}
    base = results.get("window_attn")
    print(f"one block, B={args.batch} C={args.dim} T={args.length}, {torch.get_num_threads()} threads (min of {args.rounds})")
    print(f"{'block':12s} {'params':>10s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'vs window_attn':>15s}")
    for name, r in results.items():
        ratio = f"{r['fwd_bwd_ms'] / base['fwd_bwd_ms']:.2f}x" if base else "-"
        print(f"{name:12s} {r['params']:10d} {r['fwd_ms']:9.1f} {r['fwd_bwd_ms']:11.1f} {ratio:>15s}")
    return results
