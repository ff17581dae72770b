"""Check what this machine will really run: each kernel backend, once, against the reference.

    python tools/check_env.py          # versions, then one row per op / backend / device
    python tools/check_env.py --json   # the same as JSON

Every available backend runs a small problem (forward and backward where the op has one) and is
compared with the pure-PyTorch reference: PASS / FAIL with the max relative error. A backend
that is not available shows MISSING with the import error text and the command that installs it.
The "auto" column marks what `backend="auto"` picks on that device. Exit code 1 when a backend
that auto would pick FAILs (the run would crash or be wrong), else 0.
"""
import argparse
import dataclasses
import json
import os
import sys
from typing import List, Optional

import torch


import libs.ops
from libs.cli import run_cli
from libs.utils.io import atomic_write_json
from libs.utils.paths import check_outputs
from libs.ops import _ext, _gpu, conv, nms, scan

TOL = {"selective_scan": 1e-3, "causal_conv1d": 1e-3, "nms": 1e-6}
EXT_FIX = f"{_ext.BUILD_CMD}   (builds libs._C; INSTALL.md)"


@dataclasses.dataclass
class Row:
    op: str
    backend: str
    device: str
    auto: bool
    result: str  # PASS | FAIL | MISSING
    max_err: Optional[float] = None
    detail: str = ""


def _scan_case(device: torch.device, backend: str) -> float:
    """Scan forward + backward on a [2, 8, 64] problem (N = 4, 2 groups) vs the float64 CPU
    reference; max relative error over the output and every gradient."""
    g = torch.Generator().manual_seed(0)
    shapes = dict(u=(2, 8, 64), delta=(2, 8, 64), A=(8, 4), B=(2, 2, 4, 64), C=(2, 2, 4, 64),
                  D=(8,), z=(2, 8, 64), delta_bias=(8,))
    base = {k: torch.randn(s, generator=g) * 0.5 for k, s in shapes.items()}
    base["A"] = -base["A"].abs() - 0.1
    run = (lambda **x: scan.selective_scan(**x, delta_softplus=True, backend=backend))
    ref = (lambda **x: scan.selective_scan_ref(**x, delta_softplus=True))
    return _gpu.fwd_bwd_error(run, ref, base, device)


def _conv_case(device: torch.device, backend: str) -> float:
    """Causal conv1d (width 4, SiLU) forward + backward on [2, 16, 64] vs the reference."""
    g = torch.Generator().manual_seed(0)
    base = dict(x=torch.randn(2, 16, 64, generator=g), weight=torch.randn(16, 4, generator=g),
                bias=torch.randn(16, generator=g))
    run = (lambda **x: conv.causal_conv1d(**x, activation="silu", backend=backend))
    ref = (lambda **x: conv.causal_conv1d_ref(**x, activation="silu"))
    return _gpu.fwd_bwd_error(run, ref, base, device)


def _nms_case(device: torch.device, backend: str) -> float:
    """Hard NMS and Gaussian soft-NMS on 500 THUMOS-like segments vs the PyTorch twin on the CPU:
    inf unless the kept indices are identical, else the max score difference."""
    g = torch.Generator().manual_seed(0)
    start = torch.rand(500, generator=g) * 100
    segs = torch.stack([start, start + torch.rand(500, generator=g) * 20 + 0.5], dim=1)
    scores = (torch.randperm(500, generator=g).float() + 1) / 501  # distinct: no tie ambiguity
    hard = nms.nms_1d(segs.to(device), scores.to(device), 0.5, backend=backend).cpu()
    if not torch.equal(hard, nms.nms_1d(segs, scores, 0.5, backend="torch")):
        return float("inf")
    inds, dets = nms.soft_nms_1d(segs.to(device), scores.to(device), 0.1, 0.5, 0.001, 2, backend=backend)
    ref_inds, ref_dets = nms.soft_nms_1d(segs, scores, 0.1, 0.5, 0.001, 2, backend="torch")
    if not torch.equal(inds.cpu(), ref_inds):
        return float("inf")
    return float((dets.cpu() - ref_dets).abs().max()) if len(ref_dets) else 0.0


def _availability(op: str, backend: str) -> Optional[str]:
    """None when `backend` of `op` is importable and built, else the reason with its fix."""
    if backend == "ext":
        has = {"selective_scan": scan.ext_has_scan, "causal_conv1d": conv.ext_has_conv,
               "nms": lambda: _ext.ext_has("nms_1d")}[op]()
        return None if has else f"libs._C: {_ext._IMPORT_ERROR or 'built without this op'}. {EXT_FIX}"
    if op == "nms":
        return None if _ext._C_cuda is not None else f"libs._C_cuda: {_ext.CUDA_IMPORT_ERROR}. {EXT_FIX}"
    probe, fix = {("selective_scan", "cuda"): ("mamba_ssm", _gpu.MAMBA_FIX),
                  ("selective_scan", "triton"): ("triton", _gpu.TRITON_FIX),
                  ("causal_conv1d", "cuda"): ("causal_conv1d", _gpu.CONV_FIX)}[(op, backend)]
    fn, why = _gpu.probe(probe)
    return None if fn is not None else f"{why}. {fix}"


CASES = {"selective_scan": _scan_case, "causal_conv1d": _conv_case, "nms": _nms_case}


def _check(op: str, backend: str, device: torch.device, auto: str) -> Row:
    row = Row(op, backend, device.type, backend == auto, "MISSING")
    why = _availability(op, backend)
    if why is not None:
        row.detail = why
        return row
    try:
        row.max_err = CASES[op](device, backend)
        row.result = "PASS" if row.max_err <= TOL[op] else "FAIL"
    except Exception as exc:  # the point of the check: a kernel that cannot run here
        row.result, row.detail = "FAIL", f"{type(exc).__name__}: {exc}".splitlines()[0]
    return row


def run_checks(gpu: Optional[torch.device]) -> List[Row]:
    """One row per (op, backend, device): the CPU backends, and the GPU ones when `gpu` is set."""
    autos = {"selective_scan": scan.scan_backends(), "causal_conv1d": conv.conv_backends(),
             "nms": {"cpu": nms.nms_backends()["nms_1d[cpu]"],
                     "cuda": nms.nms_backends()["nms_1d[cuda]"]}}
    gpu_plan = [("selective_scan", "cuda"), ("selective_scan", "triton"),
                ("causal_conv1d", "cuda"), ("nms", "cuda")]
    rows = [_check(op, "ext", torch.device("cpu"), autos[op]["cpu"]) for op in CASES]
    if gpu is not None:
        return rows + [_check(op, b, gpu, autos[op]["cuda"]) for op, b in gpu_plan]
    for op, backend in gpu_plan:  # no GPU here: still say what is installed and why not
        why = _availability(op, backend)
        rows.append(Row(op, backend, "cuda", False, "SKIP",
                        detail="no CUDA device" + (f"; {why}" if why else "; installed")))
    return rows


def _print(report: dict, rows: List[Row]) -> None:
    for key, value in report.items():
        if key not in ("selective_scan", "causal_conv1d", "nms"):
            print(f"{key:22s} {value}")
    print(f"\n{'op':15s}{'backend':9s}{'device':8s}{'auto':6s}{'result':9s}{'max err':>9s}  detail")
    for r in rows:
        err = "" if r.max_err is None else f"{r.max_err:.1e}"
        print(f"{r.op:15s}{r.backend:9s}{r.device:8s}{'yes' if r.auto else '':6s}{r.result:9s}"
              f"{err:>9s}  {r.detail}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                        help="write the report as JSON to OUT (no OUT, or -: to stdout, "
                        "instead of the table)")
    return parser


def check_json_output(path: Optional[str]) -> None:
    """`--json OUT` must name a file (not a folder, symbolic link or FIFO): checked before the checks run."""
    if path in (None, "-"):
        return
    if path.endswith(("/", os.sep)):
        example = path.rstrip("/" + os.sep) + "/env.json"
        raise ValueError(f"--json {path} names a folder; give a file name (e.g. {example})")
    check_outputs([], [("--json", path)])


def main(argv=None, gpu: Optional[torch.device] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args, gpu))


def _run(args: argparse.Namespace, gpu: Optional[torch.device]) -> int:
    check_json_output(args.json)
    if gpu is None and torch.cuda.is_available():
        gpu = torch.device("cuda")
    report = libs.ops.report()
    rows = run_checks(gpu)
    failed = [r for r in rows if r.auto and r.result == "FAIL"]
    data = {**report, "checks": [dataclasses.asdict(r) for r in rows]}
    if args.json == "-":  # `--json` alone: the JSON instead of the table
        print(json.dumps(data, indent=2))
        return 1 if failed else 0
    if args.json:
        atomic_write_json(args.json, data)
    _print(report, rows)
    for r in failed:
        print(f"FAILED: auto picks {r.op} backend '{r.backend}' on {r.device}, and it fails")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
