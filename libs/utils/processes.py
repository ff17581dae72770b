"""Whether a process on this host is still running (stale lock files, stale staging folders)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True when a process `pid` exists on this host (also when it belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
