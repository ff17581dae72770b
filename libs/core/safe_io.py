"""Safe readers for the files a user hands us: YAML configs and JSON annotations / results.

One place for the checks every reader needs against hostile or broken input:
- only regular files are opened (a FIFO would block forever, /dev/zero never ends, a folder
  gives a confusing IsADirectoryError);
- YAML anchors and aliases are refused (a "billion laughs" alias bomb expands to gigabytes, a
  recursive alias ends in RecursionError), as are duplicate keys at any level (the second one
  silently replaced the first) and nesting deeper than `MAX_DEPTH`;
- JSON duplicate keys are refused, and RecursionError / MemoryError from a pathological file
  become one clear error.
Every problem is an `UnsafeInputError` (a ValueError) naming the file, and the line where known.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any, Union

import yaml
from yaml.events import AliasEvent

PathLike = Union[str, os.PathLike]

MAX_DEPTH = 32  # deepest nesting accepted in a YAML config (the schema needs 4)


class UnsafeInputError(ValueError):
    """An input file is not a regular file, or its content is refused; the message names it."""


def check_regular_file(path: PathLike, kind: str) -> str:
    """Return `path` as a str if it is an existing regular file (symlinks to one are fine).

    Raises:
        UnsafeInputError: missing, a folder, a FIFO, a device or another non-regular file.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UnsafeInputError(f"cannot read {kind} file '{path}': {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise UnsafeInputError(f"{kind} file '{path}' is a folder; give the path of a file")
    if not stat.S_ISREG(mode):
        what = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or special file"
        raise UnsafeInputError(f"{kind} file '{path}' is {what}, not a regular file; give a regular file")
    return path


# --------------------------------------------------------------------------------------------
# YAML


class StrictYamlLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses anchors/aliases, duplicate keys and deep nesting."""

    def __init__(self, stream: Any, source: str = "<yaml>") -> None:
        super().__init__(stream)
        self.source = source
        self._depth = 0

    def _fail(self, mark: Any, message: str) -> None:
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UnsafeInputError(f"{self.source}{line}: {message}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            self._fail(event.start_mark, "YAML anchors and aliases (&name / *name) are not allowed in "
                       "configs; write the values out (or use `_base_` inheritance)")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._fail(event.start_mark, f"nesting deeper than {MAX_DEPTH} levels; a config needs a few")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    self._fail(key_node.start_mark, f"duplicate key '{key}' (first at line {seen[key]}); "
                               "keep one")
            except TypeError:  # an unhashable key; the base class gives the usual error
                break
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: PathLike, kind: str = "config") -> Any:
    """Parse a YAML file with `StrictYamlLoader`; None for an empty file.

    Raises:
        UnsafeInputError: not a regular file, refused content, or not valid YAML.
    """
    path = check_regular_file(path, kind)
    try:
        with open(path, encoding="utf8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnsafeInputError(f"cannot read {kind} file '{path}': {exc}") from None
    loader = StrictYamlLoader(text, source=path)
    try:
        return loader.get_single_data()
    except UnsafeInputError:
        raise
    except yaml.YAMLError as exc:
        raise UnsafeInputError(f"{path}: not valid YAML: {exc}") from None
    except ValueError as exc:  # an int over Python's digit limit, a bad date
        raise UnsafeInputError(f"{path}: {unreadable_value(exc)}") from None
    finally:
        loader.dispose()


def unreadable_value(exc: ValueError) -> str:
    """A ValueError raised while building a parsed value (an int over Python's digit limit, a
    YAML date like 2020-13-01), in words that follow the file name."""
    if "digits" in str(exc):
        return (f"holds a number with more than {sys.get_int_max_str_digits()} digits; "
                "is it the right file?")
    return f"holds a value that cannot be read: {exc}"


# --------------------------------------------------------------------------------------------
# JSON


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(Exception):
    pass


def read_json(path: PathLike, kind: str) -> Any:
    """Parse a JSON file: regular files only, duplicate keys refused, pathological nesting or
    size turned into a clear error.

    Raises:
        UnsafeInputError: naming the file and the problem.
    """
    path = check_regular_file(path, kind)
    try:
        with open(path, "r", encoding="utf8") as f:
            return json.load(f, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise UnsafeInputError(f"{kind} file '{path}' has the key '{exc.args[0]}' twice in one object; "
                               "keep one") from None
    except OSError as exc:
        raise UnsafeInputError(f"cannot read {kind} file '{path}': {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsafeInputError(f"{kind} file '{path}' is not valid JSON: {exc}") from None
    except ValueError as exc:  # an int over Python's 4300-digit limit for int(str)
        raise UnsafeInputError(f"{kind} file '{path}' {unreadable_value(exc)}") from None
    except RecursionError:
        raise UnsafeInputError(f"{kind} file '{path}' is nested too deeply to parse; "
                               "is it the right file?") from None
    except MemoryError:
        raise UnsafeInputError(f"{kind} file '{path}' is too large to load into memory") from None
