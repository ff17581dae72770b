"""Fake mamba-ssm / causal-conv1d installs, one per published layout, for CPU tests.

The Python modules of each layout are given as source text and imported for real through a
meta-path finder (so a 2.x layout without triton fails to import, as it would), while the
compiled modules (`selective_scan_cuda`, `causal_conv1d_cuda`) are fakes put in sys.modules that
enforce the TORCH_CHECKs of the published kernels (selective_scan.cpp, causal_conv1d.cpp:
dtypes, strides, shapes, widths) and record every call. Numbers come from this project's
references, so a run through a fake is checked end to end.
"""
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Dict, List, Optional

import torch

from libs.ops.conv import causal_conv1d_ref
from libs.ops.scan import selective_scan_ref

HALF_OR_FLOAT = (torch.float32, torch.float16, torch.bfloat16)


class KernelCheckError(RuntimeError):
    """A call that the real kernel's TORCH_CHECKs would have rejected."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise KernelCheckError(msg)


class FakeScanKernel(types.ModuleType):
    """`selective_scan_cuda`: fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)."""

    def __init__(self, fail: Optional[str] = None):
        super().__init__("selective_scan_cuda")
        self.calls: List[dict] = []
        self.fail = fail  # raise this at every call (a kernel built for another GPU, ...)

    def fwd(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        self.calls.append(dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                               delta_softplus=delta_softplus))
        if self.fail:
            raise RuntimeError(self.fail)
        _check(u.dtype in HALF_OR_FLOAT and A.dtype == torch.float32, "input/weight type")
        _check(delta.dtype == u.dtype, "delta dtype")
        for x in (B, C):
            _check(x.dtype == (u.dtype if x.dim() >= 3 else A.dtype), "B/C dtype")
            _check(x.dim() in (2, 4), "B/C must be [D, N] or [B, G, N, L] at the kernel")
        _check(u.stride(-1) == 1 and delta.stride(-1) == 1, "u/delta stride(-1) == 1")
        batch, dim, length = u.shape
        _check(A.shape[1] <= 256 and tuple(A.shape) == (dim, A.shape[1]), "A shape / dstate")
        _check(tuple(delta.shape) == (batch, dim, length), "delta shape")
        for x in (D, delta_bias):
            _check(x is None or (x.dtype == torch.float32 and tuple(x.shape) == (dim,)), "D/bias")
        _check(z is None or (z.dtype == u.dtype and z.stride(-1) == 1), "z dtype / stride")
        _check(isinstance(delta_softplus, bool), "delta_softplus must be a bool")
        return None

    def bwd(self, *args):  # the fakes differentiate through the reference instead
        raise AssertionError("not reached: fake selective_scan_fn uses autograd of the reference")


def fake_selective_scan_fn(kernel: Optional[FakeScanKernel]):
    """mamba-ssm's wrapper contract: fixes strides itself, makes 3-D B/C 4-D, calls the kernel;
    the returned values come from the reference (differentiable)."""
    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False):
        if kernel is None:  # current source without MAMBA_KEEP_CUDA_BUILD
            raise RuntimeError("selective_scan_cuda is not installed. To use Mamba-1, reinstall")
        rows = [x if x is None or x.stride(-1) == 1 else x.contiguous() for x in (u, delta, B, C, z)]
        B4, C4 = (x.unsqueeze(1) if x.dim() == 3 else x for x in rows[2:4])
        kernel.fwd(rows[0], rows[1], A, B4, C4, D, rows[4], delta_bias, delta_softplus)
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state)
    return selective_scan_fn


class FakeConvKernel(types.ModuleType):
    """`causal_conv1d_cuda`: causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, ...)."""

    def __init__(self, fail: Optional[str] = None):
        super().__init__("causal_conv1d_cuda")
        self.calls: List[dict] = []
        self.fail = fail

    def causal_conv1d_fwd(self, x, weight, bias, seq_idx, *rest):
        self.calls.append(dict(x=x, weight=weight, bias=bias, seq_idx=seq_idx, rest=rest))
        if self.fail:
            raise RuntimeError(self.fail)
        _check(x.dtype in HALF_OR_FLOAT and weight.dtype in HALF_OR_FLOAT, "x/weight dtype")
        _check(x.dim() == 3 and tuple(weight.shape) == (x.shape[1], weight.shape[-1]), "shapes")
        _check(x.stride(2) == 1 or x.stride(1) == 1, "x layout")
        _check(2 <= weight.shape[-1] <= 4, "causal_conv1d only supports width between 2 and 4")
        _check(bias is None or (bias.dtype == weight.dtype and bias.stride(-1) == 1), "bias")
        _check(seq_idx is None, "seq_idx must be None here (a positional argument slipped)")
        _check(isinstance(rest[-1], bool), "the last argument is the silu flag")


def fake_conv_fn(kernel: FakeConvKernel, version: str):
    """causal_conv1d_fn with the signature of `version` ("1.1" or "1.2+")."""
    def call(x, weight, bias, seq_idx, activation, *extra):
        if activation not in (None, "silu", "swish"):
            raise NotImplementedError("activation must be None, silu, or swish")
        x = x if x.stride(2) == 1 or x.stride(1) == 1 else x.contiguous()
        kernel.causal_conv1d_fwd(x, weight, bias, seq_idx, *extra, activation is not None)
        return causal_conv1d_ref(x, weight, bias, activation)

    def fn_11(x, weight, bias=None, seq_idx=None, activation=None):
        return call(x, weight, bias, seq_idx, activation)

    def fn_12(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
              final_states_out=None, activation=None):
        _check(initial_states is None and not return_final_states, "unexpected states")
        return call(x, weight, bias, seq_idx, activation, initial_states, final_states_out)
    return fn_11 if version == "1.1" else fn_12


# Python modules of each published layout (the import lines are those of the releases).
MAMBA_LAYOUTS: Dict[str, Dict[str, str]] = {
    "1.2.x": {"mamba_ssm.ops.selective_scan_interface": (
        "try:\n    from causal_conv1d import causal_conv1d_fn\n    import causal_conv1d_cuda\n"
        "except ImportError:\n    causal_conv1d_fn = None\n"
        "import selective_scan_cuda\n"
        "selective_scan_fn = make_scan_fn(selective_scan_cuda)\n")},
    "2.2.x": {"mamba_ssm.ops.selective_scan_interface": (
        "from mamba_ssm.ops.triton.layer_norm import _layer_norm_fwd\n"
        "import selective_scan_cuda\n"
        "selective_scan_fn = make_scan_fn(selective_scan_cuda)\n"),
        "mamba_ssm.ops.triton.layer_norm": "import triton\n_layer_norm_fwd = None\n"},
    "2.3.x": {"mamba_ssm.ops.selective_scan_interface": (
        "try:\n    from causal_conv1d import causal_conv1d_fn\n"
        "    from causal_conv1d.cpp_functions import causal_conv1d_fwd_function\n"
        "except ImportError:\n    causal_conv1d_fn = None\n"
        "from mamba_ssm.ops.triton.layer_norm import _layer_norm_fwd\n"
        "import selective_scan_cuda\n"
        "selective_scan_fn = make_scan_fn(selective_scan_cuda)\n"),
        "mamba_ssm.ops.triton.layer_norm": "import triton\n_layer_norm_fwd = None\n"},
    "current": {"mamba_ssm.ops.selective_scan_interface": (
        "from mamba_ssm.ops.triton.layer_norm import _layer_norm_fwd\n"
        "try:\n    import selective_scan_cuda\nexcept ImportError:\n    selective_scan_cuda = None\n"
        "selective_scan_fn = make_scan_fn(selective_scan_cuda)\n"),
        "mamba_ssm.ops.triton.layer_norm": "import triton\n_layer_norm_fwd = None\n"},
}
CONV_LAYOUTS: Dict[str, Dict[str, str]] = {
    "1.1": {"causal_conv1d": "import causal_conv1d_cuda\ncausal_conv1d_fn = make_conv_fn('1.1')\n"},
    "1.2-1.5": {"causal_conv1d": "import causal_conv1d_cuda\ncausal_conv1d_fn = make_conv_fn('1.2')\n"},
    "1.6-1.7": {"causal_conv1d": (
        "from causal_conv1d.cpp_functions import causal_conv1d_fwd_function\n"
        "causal_conv1d_fn = make_conv_fn('1.2')\n"),
        "causal_conv1d.cpp_functions": "import causal_conv1d_cuda\n"
                                       "causal_conv1d_fwd_function = causal_conv1d_cuda.causal_conv1d_fwd\n"},
}
PACKAGES = ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton", "causal_conv1d")


class SourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from source strings; `errors` maps a module name to an ImportError text
    (e.g. the undefined-symbol error of an extension built against another torch)."""

    def __init__(self, sources: Dict[str, str], helpers: dict, errors: Dict[str, str]):
        self.sources, self.helpers, self.errors = sources, helpers, errors
        self.packages = {p for p in PACKAGES if any(m.startswith(p + ".") for m in sources)}

    def find_spec(self, name, path=None, target=None):
        if name in self.errors or name in self.sources or name in self.packages:
            return importlib.machinery.ModuleSpec(name, self, is_package=name in self.packages)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        if name in self.errors:
            raise ImportError(self.errors[name])
        module.__dict__.update(self.helpers)
        exec(compile(self.sources.get(name, ""), f"<fake {name}>", "exec"), module.__dict__)


FAKE_ROOTS = ("mamba_ssm", "causal_conv1d", "selective_scan_cuda", "causal_conv1d_cuda")


def purge() -> None:
    """Drop every (fake) mamba-ssm / causal-conv1d module from sys.modules."""
    for name in [n for n in sys.modules if n.split(".")[0] in FAKE_ROOTS]:
        del sys.modules[name]


def install(monkeypatch, sources: Dict[str, str], modules: Dict[str, object],
            errors: Optional[Dict[str, str]] = None) -> None:
    """Make `sources` importable (their `make_scan_fn` / `make_conv_fn` build the fake entry
    points over the fake kernels in `modules`) and put `modules` in sys.modules."""
    conv_kernel = modules.get("causal_conv1d_cuda")
    helpers = dict(make_scan_fn=fake_selective_scan_fn,
                   make_conv_fn=lambda version: fake_conv_fn(conv_kernel, version))
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    finder = SourceFinder(sources, helpers, errors or {})
    monkeypatch.setattr(sys, "meta_path", [finder] + sys.meta_path)
