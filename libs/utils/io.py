"""Atomic file writes: a reader never sees a half-written checkpoint, result or config.

Every writer goes through `atomic_write`: the data goes to a temporary file in the *same*
folder (so `os.replace` is a rename on one file system, which POSIX makes atomic), is flushed
and fsync'ed, and only then replaces the target. If anything fails before the rename, the
temporary file is removed and the previous version of the target is untouched. A target that
is a symbolic link or an existing non-regular file (FIFO, device) is refused, and the file gets the permissions a plain `open` would (umask).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Union

from libs.utils.paths import refuse_special, refuse_symlink

PathLike = Union[str, os.PathLike]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to `path`; on a clean exit it atomically becomes `path`.

    Args:
        path: final file path; its folder must exist.
        mode: "w" (text, UTF-8) or "wb" (binary).

    Yields:
        The open temporary file. If the `with` body raises, the temporary file is deleted, the
        exception propagates and `path` keeps its previous content (or stays absent).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    refuse_symlink(path)  # os.replace would replace the link, but refuse to be misled by one
    refuse_special(path)  # nor replace a FIFO or a device (/dev/null as root) by a regular file
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() honours the umask
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself (the folder entry); not supported everywhere, hence best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Write `obj` as JSON atomically (the encoding happens before the file is touched)."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def unique_path(path: PathLike) -> Path:
    """`path` if it does not exist yet, else the first free `<stem>_<n><suffix>`, n = 1, 2, ...

    Works for files (`results.json` → `results_1.json`) and folders (`run` → `run_1`).
    """
    path = Path(path)
    if not path.exists():
        return path
    suffix = "" if path.is_dir() else path.suffix
    stem = path.name[: len(path.name) - len(suffix)]
    index = 1
    while True:
        candidate = path.with_name(f"{stem}_{index}{suffix}")
        if not candidate.exists():
            return candidate
        index += 1
