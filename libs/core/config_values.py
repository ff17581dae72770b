"""Value checks of a merged config: the ranges that the schema's types cannot say.

`check_values(cfg)` runs in `libs.core.config._finalize`, so every way of loading a config (a
YAML file, --opts, a checkpoint's stored config) is checked before anything is built or any run
folder exists. A bad value is a `ConfigError` whose message names the key, the accepted range
and the value given, and whose `.key` lets `load_config` say whether the value came from the
file or from an --opts override.
"""
from __future__ import annotations

import math
from typing import Any

from libs.core.config_merge import ConfigError


def value_error(key: str, message: str) -> ConfigError:
    """A ConfigError for `key` (kept on the exception as `.key`)."""
    exc = ConfigError(message)
    exc.key = key
    return exc


def _get(cfg: Any, key: str) -> Any:
    """`cfg` at a dotted key ("opt.epochs")."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


# ---------------------------------------------------------------------------------------------
# the tIoU thresholds


def check_tiou_thresholds(values: Any, key: str = "dataset.tiou_thresholds") -> None:
    """A non-empty set of distinct numbers in (0, 1] (tIoU 0 matches everything, > 1 nothing)."""
    if len(values) == 0:
        raise value_error(key, f"{key} must not be empty; give the tIoU thresholds to evaluate "
                               "at, e.g. [0.3, 0.4, 0.5, 0.6, 0.7]")
    seen = set()
    for value in values:
        if not 0 < value <= 1:  # also refuses NaN
            raise value_error(key, f"{key} must be numbers in (0, 1], got {value!r} "
                                   f"(in {list(values)!r})")
        if value in seen:
            raise value_error(key, f"{key} has {value!r} twice; give each threshold once")
        seen.add(value)


# ---------------------------------------------------------------------------------------------
# entry point


def check_values(cfg: Any) -> None:
    """Every value check of the config; the first problem raises.

    Raises:
        ConfigError: with `.key` the dotted key of the bad value.
    """
    check_tiou_thresholds(_get(cfg, "dataset.tiou_thresholds"))
