"""Where a config file named on the command line is found.

A config path is read relative to the current folder first. When it is not there, the configs
that ship with the package are tried: `pip install .` installs the repository's `configs/`
folder as the package data `libs.configs` (setup.py), so `tal-train configs/thumos_...yaml`
works from any folder; in a source checkout the same files are the repository's `configs/`.
`_base_` paths inside a packaged config resolve next to it, as in the checkout.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import List, Optional

logger = logging.getLogger(__name__)

PACKAGED = "libs.configs"  # the package data name of configs/ (setup.py package_dir)
PREFIXES = ("./configs/", "configs/")  # how the docs name a config in the repository


def packaged_config_dirs() -> List[str]:
    """Folders holding the shipped configs: the installed `libs.configs`, then the checkout's."""
    dirs = []
    try:
        spec = importlib.util.find_spec(PACKAGED)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [str(p) for p in spec.submodule_search_locations]
    libs_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs.append(os.path.join(os.path.dirname(libs_dir), "configs"))  # a source checkout
    seen, unique = set(), []
    for d in dirs:
        real = os.path.realpath(d)
        if os.path.isdir(d) and real not in seen:
            seen.add(real)
            unique.append(d)
    return unique


def packaged_name(path: str) -> str:
    """`configs/x.yaml` -> `x.yaml` (also `./configs/...`); other paths unchanged."""
    norm = path.replace(os.sep, "/")
    for prefix in PREFIXES:
        if norm.startswith(prefix):
            return norm[len(prefix):]
    return norm


def locate_config(path: str) -> Optional[str]:
    """`path` when it exists, else the packaged config of that name (logged), else None."""
    if os.path.exists(path):
        return path
    if os.path.isabs(path):
        return None
    name = packaged_name(path)
    for folder in packaged_config_dirs():
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            logger.warning("config %s is not in %s; using the packaged copy %s",
                        path, os.getcwd(), candidate)
            return candidate
    return None
