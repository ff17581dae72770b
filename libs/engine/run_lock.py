"""One writer per run folder: a lock file `.lock` holding the owner's pid and host.

`RunLock(folder)` creates the lock file exclusively (O_CREAT | O_EXCL). A lock left by a dead
process on this host (kill -9, power cut) is stale: it is taken over with a warning. A lock of a
live process, or of another host (whose pids cannot be checked), is refused with a clear error
naming the owner. The lock is released on `release()`, on leaving the `with` block (exceptions
included) and at interpreter exit (SIGTERM/SIGINT end through Python's normal exit path).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Optional, Union

from libs.utils.processes import pid_alive

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunLockedError(ValueError):
    """Another live process holds the run folder (a ValueError: one `error:` line in the CLIs)."""


class ForeignLockError(RunLockedError):
    """`.lock` is not a lock file this project wrote (a folder, FIFO, link, device, huge file or
    a record with a bad pid): refused rather than read, trusted or deleted."""


MAX_LOCK_BYTES = 4096  # a record is about 80 bytes


def _foreign(path: Path, why: str) -> ForeignLockError:
    return ForeignLockError(
        f"lock file {path} is {why}: it is not a lock this project wrote; if no run is active "
        f"in {path.parent}, remove it (rm -r {path}) and try again"
    )


def _read_lock_bytes(path: Path) -> Optional[bytes]:
    """The lock's bytes (at most MAX_LOCK_BYTES), None when absent; only a regular file is read
    (never a link, FIFO, device or folder: they could hang or exhaust memory)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        kinds = {stat.S_ISLNK: "a symbolic link", stat.S_ISDIR: "a folder"}
        raise _foreign(path, next((k for test, k in kinds.items() if test(mode)), "not a regular file"))
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None  # released meanwhile
    try:
        data = os.read(fd, MAX_LOCK_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_LOCK_BYTES:
        raise _foreign(path, f"larger than {MAX_LOCK_BYTES} bytes")
    return data


def read_owner(folder: Union[str, os.PathLike]) -> Optional[dict]:
    """The {"pid", "host"} of the lock in `folder`, {} for a torn lock (not JSON: a writer died
    mid-write), None for no lock.

    Raises:
        ForeignLockError: the lock is not a regular file, is too large, or its record is not ours
            (not an object, a pid that is not an integer > 0, a host that is not a string).
    """
    path = Path(folder) / LOCK_NAME
    data = _read_lock_bytes(path)
    if data is None:
        return None
    try:
        owner = json.loads(data.decode("utf-8"))
    except ValueError:  # also UnicodeDecodeError
        return {}
    pid = owner.get("pid") if isinstance(owner, dict) else None
    ours = isinstance(pid, int) and not isinstance(pid, bool) and pid > 0
    if not ours or not isinstance(owner.get("host"), str):
        raise _foreign(path, "a record without an integer pid > 0 and a host name")
    return owner


def is_locked(folder: Union[str, os.PathLike]) -> Optional[dict]:
    """The owner of a live lock on `folder` (another process), or None when free or stale."""
    owner = read_owner(folder)
    if owner is None or _is_stale(owner):
        return None
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        return None
    return owner


def _is_stale(owner: dict) -> bool:
    pid, host = owner.get("pid"), owner.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return True  # torn / foreign content: no process can be waiting on it
    return host == socket.gethostname() and not pid_alive(pid)


class RunLock:
    """Exclusive lock of a run folder; use as a context manager or call acquire()/release()."""

    def __init__(self, folder: Union[str, os.PathLike], purpose: str = "train"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.held = False

    def acquire(self) -> "RunLock":
        """Take the lock (taking over a stale one), or raise RunLockedError naming the owner."""
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose})
        for _ in range(3):  # a stale lock removed between attempts by someone else: retry
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                self._take_over_or_refuse()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(record + "\n")
            self.held = True
            atexit.register(self.release)
            return self
        raise RunLockedError(f"run folder {self.folder}: could not take the lock {self.path}; try again")

    def _take_over_or_refuse(self) -> None:
        owner = read_owner(self.folder)
        if owner is None:
            return  # released meanwhile
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            os.unlink(self.path)  # this process's own earlier lock (a run in the same process)
            return
        if _is_stale(owner):
            logger.warning("run folder %s: taking over a stale lock %s (owner %s is gone)", self.folder,
                           self.path, owner or "unreadable")
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        raise RunLockedError(
            f"run folder {self.folder} is in use by pid {owner['pid']} on {owner['host']} "
            f"({owner.get('purpose', 'train')}); wait for it to finish or stop it, or use another --name "
            f"(remove {self.path} only if that process is really gone)"
        )

    def release(self) -> None:
        """Remove the lock file if this object holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        try:
            owner = read_owner(self.folder)
        except RunLockedError:  # replaced by something else meanwhile: not ours to remove
            return
        if owner and owner.get("pid") == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
