"""Run folders: `output_folder/<config stem>_<name>`, never silently reused."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Optional

from libs.core.config import Config, write_config
from libs.utils.io import unique_path

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"


def run_folder_path(cfg: Config, name: Optional[str] = None) -> Path:
    """`output_folder/<config stem>_<name or timestamp>` (not created)."""
    stem = Path(cfg.config_path).stem if cfg.config_path else "config"
    name = name or time.strftime("%Y%m%d_%H%M%S")
    return Path(cfg.output_folder) / f"{stem}_{name}"


def make_run_folder(cfg: Config, name: Optional[str] = None, overwrite: bool = False) -> Path:
    """Create a fresh run folder and write the resolved `config.yaml` into it.

    An existing folder of the same name is kept and a suffix is added (`_1`, `_2`, ...), so
    a second run never clobbers the checkpoints of the first. With `overwrite`, an existing
    *run* folder (one holding a config.yaml) is deleted first; any other existing folder is
    refused, since deleting it could destroy unrelated data.

    Raises:
        ValueError: `overwrite` was asked for a folder that is not a run folder.
    """
    folder = run_folder_path(cfg, name)
    if folder.exists():
        if not overwrite:
            folder = unique_path(folder)
        elif (folder / CONFIG_NAME).is_file():
            logger.warning("--overwrite: deleting the previous run folder %s", folder)
            shutil.rmtree(folder)
        else:
            raise ValueError(
                f"refusing to overwrite {folder}: it exists but holds no {CONFIG_NAME}, "
                "so it is not a run folder"
            )
    while True:
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:  # another run took the name between the check and mkdir
            folder = unique_path(folder)
    write_config(cfg, folder / CONFIG_NAME)
    return folder
