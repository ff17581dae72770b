"""Confined writes: names that become file or folder names, and outputs that must not be inputs.

- `check_file_name`: a video id or run name used as ONE path component (no separator, no `..`,
  not absolute, not empty, no NUL) — otherwise a write could land outside its folder.
- `check_inside`: a path whose real location (symlinks resolved) lies under a given root.
- `check_outputs`: no output of a command is one of its inputs (or an existing folder).
- `check_outside`: no output of a command lies inside an input folder (features, a run folder).
- `check_output_dir`: a folder output is a folder or new, not an existing file.
- `refuse_symlink`: a write target that is a symbolic link is refused (never written through).
- `refuse_special`: a write target that exists but is no regular file (FIFO, device) is refused.
- `refuse_folder_name`: a file output written with a trailing separator (`out/`) names a folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Optional, Union

PathLike = Union[str, os.PathLike]

NAME_MAX_BYTES = 255  # the longest file name (one component, UTF-8 bytes) common file systems take


def check_file_name(name: str, what: str, where: str = "", fix: str = "") -> str:
    """`name` unchanged if it is safe as one file-name component, else a ValueError.

    Args:
        name: the id / name to check.
        what: how the error names it, e.g. "video id" or "run name (--name)".
        where: where it came from (an annotation file), added to the message.
        fix: what to do instead, added to the message.
    """
    why = None
    if not isinstance(name, str) or not name:
        why = "it is empty"
    elif "\x00" in name:
        why = "it contains a NUL character"
    elif os.path.isabs(name):
        why = "it is an absolute path"
    elif "/" in name or (os.sep != "/" and os.sep in name) or (os.altsep and os.altsep in name):
        why = "it contains a path separator"
    elif name in (".", ".."):
        why = f"it is {name!r}"
    elif len(name.encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES:
        why = (f"it is {len(name.encode('utf-8', 'surrogateescape'))} bytes long, over the "
               f"{NAME_MAX_BYTES}-byte file-name limit")
    if why is None:
        return name
    origin = f"{where}: " if where else ""
    hint = f"; {fix}" if fix else "; use a plain name without '/', '..' or a leading '/'"
    raise ValueError(f"{origin}{what} {name!r} cannot be used as a file name: {why}{hint}")


def check_inside(path: PathLike, root: PathLike, what: str) -> Path:
    """The real path of `path` if it lies inside the real path of `root`, else a ValueError."""
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real != real_root and real_root not in real.parents:
        raise ValueError(f"{what} {path} resolves to {real}, outside {real_root}; refusing to touch it")
    return real


def refuse_symlink(path: PathLike, what: str = "output file", action: str = "write") -> None:
    """ValueError when `path` is a symbolic link: writes (and appends) never follow one."""
    if os.path.islink(path):
        raise ValueError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); refusing to {action} "
                         "through it: remove the link or choose another path")


def refuse_special(path: PathLike, what: str = "output file") -> None:
    """ValueError when `path` exists but is not a regular file (a FIFO, a device, a socket):
    replacing it by a file (or blocking on it) is never what the user meant."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
        raise ValueError(f"{what} {path} exists and is not a regular file (a device, FIFO or socket); "
                         "refusing to replace it: choose a file path")


def refuse_folder_name(path: PathLike, what: str = "output file") -> None:
    """ValueError when the file output `path` ends with a path separator: `new/` names a folder,
    and writing a file called `new` instead is not what the user meant."""
    text = os.fspath(path)
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise ValueError(f"{what} {text} ends with a path separator, so it names a folder; give a file "
                         f"path: a file in that folder ({text}NAME) or the path without the trailing separator")


def check_output_dir(path: PathLike, what: str, contents: str) -> None:
    """ValueError when the folder output `path` (option `what`) exists as something else than a
    folder; `contents` says what goes there ("for the feature files", "to extract into")."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {os.fspath(path)} exists and is not a folder; give a folder "
                         f"{contents} (it is created if missing)")


def check_outside(outputs: Iterable[tuple[str, Optional[PathLike]]], folder: Optional[PathLike],
                  what: str) -> None:
    """Refuse outputs whose real location lies inside the input folder `folder` (named `what`)."""
    if not folder or not os.path.isdir(folder):
        return
    real_root = Path(os.path.realpath(folder))
    for name, path in outputs:
        if path is None:
            continue
        real = Path(os.path.realpath(path))
        if real == real_root or real_root in real.parents:
            raise ValueError(f"{name} {os.fspath(path)} lies inside the {what} {os.fspath(folder)}: "
                             "writing there could replace or add an input; choose a path outside it")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(inputs: Iterable[tuple[str, Optional[PathLike]]],
                  outputs: Iterable[tuple[str, Optional[PathLike]]]) -> None:
    """Refuse outputs that would destroy an input or each other, or that are folders.

    Args:
        inputs: (option name, path) pairs the command reads; None paths are skipped.
        outputs: (option name, path) pairs the command writes; None paths are skipped.
    Raises:
        ValueError naming both options and the path.
    """
    ins = [(n, os.fspath(p)) for n, p in inputs if p is not None]
    outs = [(n, os.fspath(p)) for n, p in outputs if p is not None]
    for i, (name, path) in enumerate(outs):
        if os.path.isdir(path):
            raise ValueError(f"{name} {path} is a folder; give a file name")
        refuse_folder_name(path, name)
        refuse_symlink(path, name)
        refuse_special(path, name)
        for other, src in ins:
            if _same_file(path, src):
                raise ValueError(f"{name} {path} is also the input {other}: writing it would destroy "
                                 "the input; choose another output path")
        for other, dst in outs[:i]:
            if _same_file(path, dst):
                raise ValueError(f"{name} and {other} are the same file {path}: one would overwrite the "
                                 "other; choose different paths")
