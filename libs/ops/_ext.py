"""The single import point of the compiled extension `libs._C`.

`libs._C` is built by `pip install -e . --no-build-isolation` from csrc/. When it is missing
(not built, or built for another torch), every op falls back to its pure-PyTorch reference and
one warning says how to build it.
"""
import logging

import torch  # noqa: F401  (loads libc10 etc. before the extension)

logger = logging.getLogger(__name__)

try:
    from libs import _C  # noqa: F401  (built by setup.py from csrc/)
except ImportError as exc:  # not compiled: pure-PyTorch implementations are used
    _C = None
    _IMPORT_ERROR = str(exc)
    logger.warning(
        "libs._C is not built (%s); using the pure-PyTorch ops (slower). "
        "Build it with: pip install -e . --no-build-isolation",
        exc,
    )
else:
    _IMPORT_ERROR = None


def ext_available() -> bool:
    """True when the compiled extension imported."""
    return _C is not None


def require_ext(op: str):
    """Return `libs._C`, or raise with the build command when it is missing."""
    if _C is None:
        raise RuntimeError(
            f"{op}: backend 'ext' was requested but libs._C is not built ({_IMPORT_ERROR}). "
            "Build it with: pip install -e . --no-build-isolation"
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
