"""Run folders: `output_folder/<config stem>_<name>`, never silently reused."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from libs.core.config import Config, write_config
from libs.engine.run_lock import RunLock, RunLockedError, is_locked
from libs.utils.io import unique_path
from libs.utils.paths import NAME_MAX_BYTES, check_file_name, check_inside

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
MARKER_NAME = ".actionmamba_run"  # written at creation: --overwrite deletes only folders holding it


def run_folder_path(cfg: Config, name: Optional[str] = None) -> Path:
    """`output_folder/<config stem>_<name or timestamp>` (not created).

    Raises:
        ValueError: `name` is not a plain name (absolute, `..`, a path separator).
    """
    stem = Path(cfg.config_path).stem if cfg.config_path else "config"
    if name is not None:
        check_file_name(name, "run name (--name)", fix="give a plain name; the folder is made in output_folder")
    name = name or time.strftime("%Y%m%d_%H%M%S")
    return Path(cfg.output_folder) / f"{stem}_{name}"


def check_output_folder(output_folder: str) -> None:
    """ValueError when `output_folder`, or the nearest of its parents that exists, is not a folder
    (the run folder could not be made in it); checked before anything is created."""
    path = Path(output_folder or ".")
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    if os.path.lexists(path) and not path.is_dir():
        shown = output_folder if path == Path(output_folder) else f"{output_folder} ({path})"
        raise ValueError(f"output_folder {shown} exists and is not a folder; runs are made in "
                         "output_folder/<config name>_<name>: give a folder (--opts output_folder=DIR)")


def _free_folder(folder: Path) -> Path:
    """`folder`, or the first free `<folder>_<n>`; a clear error when that name is too long."""
    try:
        return unique_path(folder)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
    raise ValueError(f"run folder {folder} exists, and its name with a suffix (_1, _2, ...) would be over the "
                     f"{NAME_MAX_BYTES}-byte file-name limit; give a shorter --name (or --overwrite it)")


def _delete_run_folder(folder: Path, output_folder: str) -> None:
    """Delete `folder` for --overwrite: only a run folder this project made, inside output_folder,
    that no live process holds."""
    real = check_inside(folder, output_folder, "--overwrite: run folder")
    if real == Path(os.path.realpath(output_folder)) or folder.is_symlink():
        raise ValueError(f"--overwrite: refusing to delete {folder}: it is output_folder itself or a link")
    if not (folder / MARKER_NAME).is_file():
        raise ValueError(
            f"refusing to overwrite {folder}: it holds no {MARKER_NAME}, so it is not a run folder this project created; "
            "delete it yourself or choose another --name"
        )
    owner = is_locked(folder)
    if owner is not None:
        raise RunLockedError(f"--overwrite: run folder {folder} is in use by pid {owner.get('pid')} on "
                             f"{owner.get('host')}; wait for that run to finish or stop it")
    logger.warning("--overwrite: deleting the previous run folder %s", folder)
    shutil.rmtree(real)


def make_run_folder(
    cfg: Config, name: Optional[str] = None, overwrite: bool = False
) -> tuple[Path, RunLock]:
    """Create a fresh run folder, lock it, mark it as ours and write the resolved `config.yaml`.

    The lock (`libs.engine.run_lock`) is taken as soon as the folder exists, so there is no
    moment when another process's `--overwrite` could delete it; the caller holds it (it is
    released at interpreter exit, or by `lock.release()`).

    An existing folder of the same name is kept and a suffix is added (`_1`, `_2`, ...), so
    a second run never clobbers the checkpoints of the first. With `overwrite`, an existing
    run folder is deleted first, but only one this project made (it holds the marker file
    `.actionmamba_run`), whose real path lies inside `output_folder`, and that no live run holds
    (see `libs.engine.run_lock`); anything else is refused.

    Returns:
        (the folder, its held RunLock).
    Raises:
        ValueError: a bad run name, or `overwrite` of a folder that may not be deleted.
    """
    check_output_folder(cfg.output_folder)
    folder = run_folder_path(cfg, name)
    if os.path.lexists(folder):
        if not overwrite:
            folder = _free_folder(folder)
        else:
            _delete_run_folder(folder, cfg.output_folder)
    while True:
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:  # another run took the name between the check and mkdir
            folder = _free_folder(folder)
    lock = RunLock(folder).acquire()
    try:
        (folder / MARKER_NAME).write_text("run folder created by ActionMamba train.py\n", encoding="utf-8")
        write_config(cfg, folder / CONFIG_NAME)
    except BaseException:
        lock.release()
        raise
    return folder, lock
