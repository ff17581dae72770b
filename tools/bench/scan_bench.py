"""Benchmark of the selective scan: on CPU the C++ kernel ("ext") against the PyTorch reference;
with --device cuda the GPU backends (Triton, mamba-ssm's kernel "cuda", the PyTorch loop).

    python tools/bench/scan_bench.py [--length 2304] [--threads 2]
    python tools/benchmark.py scan --device cuda [--skip-step]   # skipped, with a note, on CPU

Times forward (under no_grad) and forward + backward at the ActionMamba THUMOS shape
(B=2, D=512, N=16, L=2304, float32, with z, D, delta_bias and softplus) in one process, and
reports the memory each saves for backward (unique storages seen by saved-tensor hooks).
Times are the minimum over rounds: the CPU is shared, so the minimum is the stable statistic.
On CUDA each timed call ends with a synchronize; each backend also times a THUMOS-shaped DBM
training step (tools/bench/step_bench.py on the DBM config) with that backend forced.
"""
import argparse
import logging
import time
from typing import Callable, Dict, List

import torch

from libs.ops import _ext
from libs.ops.scan import ext_has_scan, selective_scan, set_default_backend

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Options of the scan benchmark."""
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dstate", type=int, default=16)
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds of the ext kernel")
    parser.add_argument("--ref-rounds", type=int, default=2, help="timed rounds of the reference")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cuda: triton vs torch vs mamba-ssm on the GPU (skipped without one)")
    parser.add_argument("--skip-step", action="store_true",
                        help="with --device cuda: do not time the DBM training step per backend")


def _inputs(batch: int, dim: int, dstate: int, length: int) -> Dict[str, torch.Tensor]:
    """Mamba-like inputs: A = -[1..N] (S4D-real), softplus(delta + bias) in about [1e-3, 0.1]."""
    return dict(
        u=torch.randn(batch, dim, length),  # [B, D, L]
        delta=torch.randn(batch, dim, length) * 0.5,  # [B, D, L]
        A=-torch.arange(1, dstate + 1, dtype=torch.float32).repeat(dim, 1),  # [D, N]
        B=torch.randn(batch, dstate, length),  # [B, N, L]
        C=torch.randn(batch, dstate, length),  # [B, N, L]
        D=torch.ones(dim),
        z=torch.randn(batch, dim, length),  # [B, D, L]
        delta_bias=torch.rand(dim) * 4.6 - 6.9,
    )


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _min_ms(fn: Callable[[], None], rounds: int) -> float:
    """Minimum wall time of fn over `rounds` calls, after one warm-up call, in ms."""
    fn()
    times: List[float] = []
    for _ in range(rounds):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()  # GPU kernels run asynchronously: time them to completion
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def _saved_mb(fn: Callable[[], None]) -> float:
    """MB of the distinct storages that autograd saves for backward while fn runs."""
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values()) / 2**20


def _measure(backend: str, inputs: Dict[str, torch.Tensor], rounds: int) -> Dict[str, float]:
    """Forward and forward + backward times (ms) and saved memory (MB) of one backend."""
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    grad_out = torch.randn_like(inputs["u"])

    def forward() -> None:
        with torch.no_grad():
            selective_scan(**inputs, delta_softplus=True, backend=backend)

    def forward_backward() -> None:
        # autograd.grad returns the gradients instead of adding them into .grad, which would
        # time eight extra tensor additions
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        torch.autograd.grad(out, list(leaves.values()), grad_out)

    def forward_with_grad() -> None:
        selective_scan(**leaves, delta_softplus=True, backend=backend)

    return {
        "fwd_ms": _min_ms(forward, rounds),
        "fwd_bwd_ms": _min_ms(forward_backward, rounds),
        "saved_mb": _saved_mb(forward_with_grad),
    }


def _print_table(result: dict) -> None:
    shape = result["shape"]
    print(f"selective scan, float32, B={shape['batch']} D={shape['dim']} N={shape['dstate']} "
          f"L={shape['length']}, {result['threads']} threads (min over rounds)")
    print(f"{'backend':<10}{'fwd ms':>10}{'fwd+bwd ms':>12}{'saved MB':>10}")
    for name in ("ext", "torch"):
        if name in result:
            r = result[name]
            print(f"{name:<10}{r['fwd_ms']:>10.2f}{r['fwd_bwd_ms']:>12.2f}{r['saved_mb']:>10.1f}")
    if "speedup" in result:
        s = result["speedup"]
        print(f"{'speed-up':<10}{s['fwd']:>9.1f}x{s['fwd_bwd']:>11.1f}x")


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark, print its table, and return the numbers."""
    if args.device == "cuda":
        return run_gpu(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs = _inputs(args.batch, args.dim, args.dstate, args.length)
    shape = dict(batch=args.batch, dim=args.dim, dstate=args.dstate, length=args.length)
    result = {"shape": shape, "threads": torch.get_num_threads()}
    if ext_has_scan():
        result["ext"] = _measure("ext", inputs, args.rounds)
    else:
        logger.warning("libs._C has no selective scan (%s); timing the reference only",
                       _ext.BUILD_CMD)
    result["torch"] = _measure("torch", inputs, args.ref_rounds)
    if "ext" in result:
        ext, ref = result["ext"], result["torch"]
        result["speedup"] = {key: ref[f"{key}_ms"] / ext[f"{key}_ms"] for key in ("fwd", "fwd_bwd")}
    _print_table(result)
    return result


GPU_BACKENDS = ("cuda", "triton", "torch")  # mamba-ssm's kernel, the Triton kernel, the loop
DBM_CONFIG = "configs/thumos_internvideo2_6b_dbm.yaml"


def _dbm_step_ms(backend: str, args: argparse.Namespace) -> float:
    """One THUMOS-shaped DBM training step (engine train_step: forward, losses, backward, AdamW,
    EMA) with every scan forced to `backend`, in ms (min over rounds; 1 round for the loop)."""
    from tools.bench.step_bench import bench_config  # the step benchmark's model and batch

    rounds = 1 if backend == "torch" else 3
    step_args = argparse.Namespace(batch=args.batch, length=args.length, amp="none", rounds=rounds)
    set_default_backend(backend)
    try:
        return 1e3 * bench_config(DBM_CONFIG, step_args, torch.device("cuda"))["step_s"]
    finally:
        set_default_backend(None)


def _measure_gpu(backend: str, inputs: Dict[str, torch.Tensor], args) -> dict:
    """`_measure` of one GPU backend (and its DBM step), or why it cannot run here."""
    try:  # an explicit backend raises, with the install command, when it cannot run
        selective_scan(**inputs, delta_softplus=True, backend=backend)
    except (RuntimeError, ValueError) as exc:
        return {"unavailable": str(exc)}
    r = _measure(backend, inputs, args.ref_rounds if backend == "torch" else args.rounds)
    if not args.skip_step:
        r["dbm_step_ms"] = _dbm_step_ms(backend, args)
    return r


def _print_gpu_table(result: dict) -> None:
    shape = result["shape"]
    print(f"selective scan on {result['device']}, float32, B={shape['batch']} D={shape['dim']} "
          f"N={shape['dstate']} L={shape['length']} (min over rounds)")
    print(f"{'backend':<10}{'fwd ms':>10}{'fwd+bwd ms':>12}{'saved MB':>10}{'DBM step ms':>13}")
    for name in GPU_BACKENDS:
        r = result[name]
        if "unavailable" in r:
            print(f"{name:<10}unavailable: {r['unavailable']}")
            continue
        step = f"{r['dbm_step_ms']:>13.1f}" if "dbm_step_ms" in r else f"{'-':>13}"
        print(f"{name:<10}{r['fwd_ms']:>10.2f}{r['fwd_bwd_ms']:>12.2f}{r['saved_mb']:>10.1f}{step}")
    tri, cuda, ref = result["triton"], result["cuda"], result["torch"]
    if "unavailable" not in tri and "unavailable" not in cuda:
        print(f"fwd+bwd: triton takes {tri['fwd_bwd_ms'] / cuda['fwd_bwd_ms']:.2f}x mamba-ssm's "
              "time (target <= 2x)")
    if "unavailable" not in tri and "unavailable" not in ref:
        print(f"fwd+bwd: triton is {ref['fwd_bwd_ms'] / tri['fwd_bwd_ms']:.1f}x faster than the "
              "PyTorch loop (target >= 20x)")


def run_gpu(args: argparse.Namespace) -> dict:
    """Triton vs mamba-ssm vs the PyTorch loop on the GPU; a clear skip without one."""
    if not torch.cuda.is_available():
        print("scan --device cuda: skipped, no CUDA GPU is visible (the Triton and mamba-ssm "
              "backends run on CUDA tensors only)")
        return {"skipped": "no CUDA GPU visible"}
    torch.manual_seed(0)
    inputs = {k: v.cuda() for k, v in _inputs(args.batch, args.dim, args.dstate,
                                                args.length).items()}
    shape = dict(batch=args.batch, dim=args.dim, dstate=args.dstate, length=args.length)
    result = {"shape": shape, "device": torch.cuda.get_device_name()}
    for name in GPU_BACKENDS:
        result[name] = _measure_gpu(name, inputs, args)
    _print_gpu_table(result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    cli = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_args(cli)
    run(cli.parse_args())
