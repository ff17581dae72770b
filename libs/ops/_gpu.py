"""What the optional GPU kernels can really run: probes, a first-call self-test, kernel limits.

A kernel is used only when all three hold:
1. its Python entry point imports AND its compiled symbol is present (`probe`). mamba-ssm's
   current source imports `selective_scan_cuda` optionally and leaves it None when the CUDA
   build was skipped, so "selective_scan_fn imports" alone proves nothing;
2. once per process and device, a tiny forward + backward on that device matches the PyTorch
   reference (`self_test`); otherwise one warning names the cause, the fix and the fallback;
3. the inputs are inside the kernel's limits (`scan_unfit`, `conv_unfit`, from the TORCH_CHECKs
   of selective_scan.cpp and causal_conv1d.cpp); otherwise the dispatcher falls back, logged once.

Published layouts handled (tests/test_gpu_probes.py fakes each one):
- mamba-ssm 1.2.x, 2.2.x, 2.3.x: `mamba_ssm.ops.selective_scan_interface` imports
  `selective_scan_cuda` unconditionally (2.x also needs triton, einops, transformers);
- mamba-ssm current source: the same module sets `selective_scan_cuda = None` unless it was built
  with MAMBA_KEEP_CUDA_BUILD=TRUE, and `selective_scan_fn` raises at its first call;
- causal-conv1d 1.2-1.5: the interface imports `causal_conv1d_cuda` itself; 1.6-1.7 through
  `causal_conv1d.cpp_functions` (torch.library custom ops). `causal_conv1d_fn(x, weight, bias,
  seq_idx, ...)`: the signature grew between releases, so only x, weight, bias are passed by
  position and `activation` by keyword.
"""
import importlib
import logging
import math
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

MAMBA_PIN = "mamba-ssm==2.3.2.post1"
CONV_PIN = "causal-conv1d==1.7.0"
MAMBA_FIX = (f"MAMBA_FORCE_BUILD=TRUE MAMBA_KEEP_CUDA_BUILD=TRUE pip install {MAMBA_PIN} "
             "--no-build-isolation  (INSTALL.md, GPU section)")
CONV_FIX = (f"CAUSAL_CONV1D_FORCE_BUILD=TRUE pip install {CONV_PIN} --no-build-isolation  "
            "(INSTALL.md, GPU section)")
TRITON_FIX = "pip install triton matching your CUDA torch (INSTALL.md, GPU section)"
HALF_OR_FLOAT = (torch.float32, torch.float16, torch.bfloat16)

Probe = Tuple[Optional[Callable], str]  # (entry point or None, why not / "")
_probes: Dict[str, Probe] = {}
_tested: Dict[Tuple[str, str], bool] = {}


def reset() -> None:
    """Forget every probe and self-test result (tests; or after installing a package at run time)."""
    _probes.clear()
    _tested.clear()


def _import(module: str):
    """The module, or raise with the text of the import error."""
    return importlib.import_module(module)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _probe_mamba() -> Probe:
    """mamba-ssm's `selective_scan_fn` when its compiled `selective_scan_cuda` is present."""
    try:
        iface = _import("mamba_ssm.ops.selective_scan_interface")
    except Exception as exc:  # ImportError, or OSError / RuntimeError of a broken CUDA build
        return None, f"mamba_ssm does not import ({_error_text(exc)})"
    fn = getattr(iface, "selective_scan_fn", None)
    if fn is None:
        return None, "mamba_ssm.ops.selective_scan_interface has no selective_scan_fn"
    kernel = getattr(iface, "selective_scan_cuda", None)
    if kernel is None and not hasattr(iface, "selective_scan_cuda"):
        try:  # a layout that no longer re-exports it: the top-level extension module
            kernel = _import("selective_scan_cuda")
        except Exception as exc:
            return None, f"mamba-ssm's compiled selective_scan_cuda does not import ({_error_text(exc)})"
    if kernel is None or not (hasattr(kernel, "fwd") and hasattr(kernel, "bwd")):
        return None, ("mamba-ssm is installed without its compiled selective_scan_cuda kernel "
                      "(its current source builds it only with MAMBA_KEEP_CUDA_BUILD=TRUE)")
    return fn, ""


def _probe_conv() -> Probe:
    """causal-conv1d's `causal_conv1d_fn` when its compiled `causal_conv1d_cuda` is present."""
    try:
        fn = getattr(_import("causal_conv1d"), "causal_conv1d_fn")
        kernel = _import("causal_conv1d_cuda")
    except Exception as exc:
        return None, f"causal_conv1d does not import ({_error_text(exc)})"
    if not hasattr(kernel, "causal_conv1d_fwd"):
        return None, "causal_conv1d_cuda has no causal_conv1d_fwd (a partial or foreign build)"
    return fn, ""


def _probe_triton() -> Probe:
    """libs.ops.scan_triton's `selective_scan_triton` when `triton_status()` says it is usable."""
    try:
        mod = _import("libs.ops.scan_triton")
        usable, reason = mod.triton_status()
    except ModuleNotFoundError as exc:
        if exc.name == "libs.ops.scan_triton":
            return None, "libs/ops/scan_triton.py is not in this checkout"
        return None, f"libs.ops.scan_triton does not import ({_error_text(exc)})"
    except Exception as exc:
        return None, f"libs.ops.scan_triton does not import ({_error_text(exc)})"
    if not usable:
        return None, f"Triton scan unusable: {reason}"
    return mod.selective_scan_triton, ""


_PROBERS = {"mamba_ssm": _probe_mamba, "causal_conv1d": _probe_conv, "triton": _probe_triton}


def probe(name: str) -> Probe:
    """(entry point, "") when `name` ("mamba_ssm" | "causal_conv1d" | "triton") can be called,
    else (None, the reason). Cached per process; `reset()` forgets."""
    if name not in _probes:
        _probes[name] = _PROBERS[name]()
        if _probes[name][0] is None:
            logger.debug("%s unavailable: %s", name, _probes[name][1])
    return _probes[name]


def self_test(name: str, device: torch.device, run: Callable[[], float], tol: float,
              fix: str, fallback: str) -> bool:
    """Run `run` (a tiny call on `device` returning its max relative error vs the reference)
    once per (name, device); on an exception or an error above `tol`, warn once and return False."""
    key = (name, str(device))
    if key in _tested:
        return _tested[key]
    try:
        with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
            err = run()
        ok, cause = err <= tol, f"max relative error {err:.2e} vs the PyTorch reference > {tol}"
    except Exception as exc:  # the point: a kernel that imports but cannot run here
        ok, cause = False, _error_text(exc).splitlines()[0]
    if not ok:
        logger.warning("%s failed its first call on %s (%s); falling back to '%s'. Fix: %s",
                       name, device, cause, fallback, fix)
    _tested[key] = ok
    return ok


def rel_err(actual: Tensor, expected: Tensor) -> float:
    """max |a - e| / max(max |e|, 1e-6), in float64; inf for non-finite values."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(a).all():
        return math.inf
    return float((a - e).abs().max() / max(float(e.abs().max()), 1e-6))


def fwd_bwd_error(run: Callable[..., Tensor], ref: Callable[..., Tensor], base: Dict[str, Tensor],
                  device: torch.device) -> float:
    """`run(**inputs)` on `device` against `ref(**inputs)` in float64 on the CPU, both from the
    tensors `base`: the max `rel_err` of the output and of every input's gradient (the backward
    of a fixed linear functional of the output)."""
    leaves = {k: v.to(device).detach().requires_grad_() for k, v in base.items()}
    refs = {k: v.double().detach().requires_grad_() for k, v in base.items()}
    out, expected = run(**leaves), ref(**refs)
    weight = torch.linspace(-1, 1, expected.numel(), dtype=torch.float64).view_as(expected)
    (out * weight.to(out)).sum().backward()
    (expected * weight).sum().backward()
    return max([rel_err(out, expected)] + [rel_err(leaves[k].grad, refs[k].grad) for k in base])


def scan_unfit(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
               z: Optional[Tensor], delta_bias: Optional[Tensor]) -> Optional[str]:
    """Why selective_scan_cuda's TORCH_CHECKs would reject these inputs, or None.

    selective_scan.cpp: u in float32/16/bf16; delta, z and variable B/C in u's dtype; A float32
    (complex not used here); time-invariant B/C in A's dtype; D, delta_bias float32 (cast here
    when half); d_state <= 256; groups divide the channels; one CUDA device.
    """
    if u.dtype not in HALF_OR_FLOAT:
        return f"u is {u.dtype}; the kernel takes float32, float16 or bfloat16"
    if A.dtype != torch.float32:
        return f"A is {A.dtype}; the kernel takes float32"
    for name, x in (("delta", delta), ("z", z)):
        if x is not None and x.dtype != u.dtype:
            return f"{name} is {x.dtype} but u is {u.dtype}; the kernel needs one dtype"
    for name, x in (("B", B), ("C", C)):
        want = u.dtype if x.dim() >= 3 else A.dtype
        if x.dtype != want:
            return f"{name} is {x.dtype}; the kernel needs {want} here"
        if x.dim() == 4 and u.shape[1] % x.shape[1]:
            return f"{name} has {x.shape[1]} groups, which do not divide {u.shape[1]} channels"
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None and x.dtype not in HALF_OR_FLOAT:
            return f"{name} is {x.dtype}; the kernel takes float32"
    if A.shape[-1] > 256:
        return f"d_state {A.shape[-1]} > 256, the kernel's limit"
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    if any(t.device != u.device for t in tensors):
        return "inputs on several devices"
    return None


def conv_unfit(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Optional[str]:
    """Why causal_conv1d_cuda's TORCH_CHECKs would reject these inputs, or None.

    causal_conv1d.cpp: x [B, D, L] and weight [D, W] in float32/16/bf16 (may differ), width 2-4,
    bias in weight's dtype, one CUDA device. x is made L-contiguous before the call, so the
    channel-last layout (and its D % 8 rule) never reaches the kernel.
    """
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        return f"shapes x {tuple(x.shape)}, weight {tuple(weight.shape)} are not [B, D, L], [D, W]"
    if not 2 <= weight.shape[1] <= 4:
        return f"width {weight.shape[1]}; the kernel supports widths 2 to 4"
    if x.dtype not in HALF_OR_FLOAT or weight.dtype not in HALF_OR_FLOAT:
        return f"x {x.dtype}, weight {weight.dtype}; the kernel takes float32, float16 or bfloat16"
    if bias is not None and bias.dtype != weight.dtype:
        return f"bias is {bias.dtype} but weight is {weight.dtype}"
    if weight.device != x.device or (bias is not None and bias.device != x.device):
        return "inputs on several devices"
    return None
