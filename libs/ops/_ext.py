"""The single import point of the compiled extension `libs._C`.

`libs._C` (CPU kernels) is built by `pip install --no-build-isolation --use-pep517 -e .` from
csrc/. When it is missing (not built, or built for another torch), every op falls back to its
pure-PyTorch reference and one warning says how to build it. `libs._C_cuda` (the CUDA NMS,
csrc/cuda/) is a separate extension, present only where setup.py could compile CUDA; None
elsewhere.
"""
import importlib
import os
import logging

import torch  # noqa: F401  (loads libc10 etc. before the extension)

logger = logging.getLogger(__name__)

DIST_NAME = "actionmamba-tal"
BUILD_CMD = "pip install --no-build-isolation --use-pep517 -e ."  # builds libs._C (and libs._C_cuda where CUDA is)


def _installed_copy(name: str):
    """`libs.<name>` from the installed package when this `libs` (e.g. a source checkout that
    shadows a non-editable `pip install .`) has no compiled copy of its own; else None."""
    import importlib.metadata
    import importlib.util

    # every installed copy: a checkout's own *.egg-info (no binaries listed) may come first
    files = [f for dist in importlib.metadata.distributions(name=DIST_NAME) for f in dist.files or []]
    for f in files:
        if f.parent.as_posix() == "libs" and f.name.startswith(name + ".") and f.suffix == ".so":
            spec = importlib.util.spec_from_file_location(f"libs.{name}", str(f.locate()))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            logger.info("libs.%s: using the installed build %s", name, f.locate())
            return module
    return None


def _load(name: str):
    """(module, None) for libs.<name>, from this package or the installed one, or (None, why)."""
    try:
        return importlib.import_module(f"libs.{name}"), None
    except ImportError as exc:
        try:
            module = _installed_copy(name)
        except Exception as other:  # an installed copy built for another torch, ...
            logger.debug("installed libs.%s unusable: %s", name, other)
            module = None
        return module, None if module is not None else str(exc)


_C, _IMPORT_ERROR = _load("_C")  # the CPU kernels, built by setup.py from csrc/
if _C is None:  # not compiled: pure-PyTorch implementations are used
    logger.warning("libs._C is not built (%s); using the pure-PyTorch ops (slower). "
                   "Build it with: %s", _IMPORT_ERROR, BUILD_CMD)
_C_cuda, CUDA_IMPORT_ERROR = _load("_C_cuda")  # the CUDA NMS; built only where CUDA is
if _C_cuda is None:  # no CUDA build, or CPU-only torch: NMS of GPU tensors runs on the CPU
    logger.debug("libs._C_cuda is not importable: %s", CUDA_IMPORT_ERROR)


def ext_available() -> bool:
    """True when the compiled extension imported."""
    return _C is not None


def require_ext(op: str):
    """Return `libs._C`, or raise with the build command when it is missing."""
    if _C is None:
        raise RuntimeError(
            f"{op}: backend 'ext' was requested but libs._C is not built ({_IMPORT_ERROR}). "
            f"Build it with: {BUILD_CMD}"
        )
    return _C


def ext_has(fn_name: str) -> bool:
    """True when `libs._C` is built and exports `fn_name` (read at call time: tests swap `_C`)."""
    return _C is not None and hasattr(_C, fn_name)


_logged_backends: set = set()


def log_once(op: str, backend: str, msg: str = "", level: int = logging.INFO) -> None:
    """Log `op` running on `backend` once per process (and per distinct pair), not per call."""
    if (op, backend) in _logged_backends:
        return
    _logged_backends.add((op, backend))
    logger.log(level, "%s: using backend '%s'%s", op, backend, f" ({msg})" if msg else "")


_noted: set = set()


def note_once(op: str, key: str, msg: str, level: int = logging.INFO) -> None:
    """Log "op: msg" once per process per (op, key), e.g. one fallback reason, not per call."""
    if (op, key) in _noted:
        return
    _noted.add((op, key))
    logger.log(level, "%s: %s", op, msg)


class DefaultBackend:
    """The backend an op uses when called with `backend=None`: forced in code (`set`), else the
    environment variable `env`, else "auto". One instance per op (scan, conv)."""

    def __init__(self, op: str, env: str, choices: tuple):
        self.op, self.env, self.choices = op, env, choices
        self.forced = None

    def set(self, name) -> None:
        if name is not None and name not in self.choices:
            raise ValueError(f"{self.op}: unknown backend {name!r}, expected one of {self.choices}")
        self.forced = name

    def get(self) -> str:
        name = self.forced or os.environ.get(self.env, "").strip() or "auto"
        if name not in self.choices:
            raise ValueError(f"{self.env}={name!r} is not a backend; use one of {self.choices}")
        return name

