"""The strict merge behind `libs.core.config.load_config`: YAML values and `key=value`
overrides into the schema dataclasses, type-checked, unknown keys named with the nearest valid one.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from typing import Any, Optional, Union

import yaml

from libs.core.safe_io import StrictYamlLoader, UnsafeInputError, unreadable_value


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _nearest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.0)
    return close[0] if close else ""


EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 2e-3, 1E5, +.5e1


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against the type hint and convert lists to tuples; raise naming `where`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{where}: got None, which is not allowed")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        check_keys(value, where)
        return dict(value)
    if hint is float:
        if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)  # `2e-3`: YAML 1.1 reads a number without a dot as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        try:
            return float(value)
        except OverflowError:  # an int beyond the float range
            digits = str(value)
            raise ConfigError(f"{where}: {digits[:12]}... ({len(digits)} digits) is too large "
                              "for a number") from None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return merge(hint(), value, where)
    raise ConfigError(f"{where}: unsupported schema type {hint}")


def check_keys(values: dict, where: str) -> None:
    """YAML allows `1: 2`; a config key is a name."""
    for key in values:
        if not isinstance(key, str):
            hint = ("; YAML reads yes/no/on/off as booleans, quote such a key"
                    if isinstance(key, bool) else "")
            exc = ConfigError(f"{where or 'top level'}: keys must be strings, got "
                              f"{type(key).__name__} {key!r}{hint}")
            exc.key = where  # load_config names the --opts override that set it
            raise exc


def merge(node: Any, values: dict, where: str) -> Any:
    """Recursively merge a dict into a dataclass instance; unknown keys are errors."""
    hints = _type_hints(type(node))
    check_keys(values, where)
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in hints:
            raise ConfigError(
                f"unknown config key '{path}'; did you mean '{_join(where, _nearest(key, hints))}'?"
            )
        current = getattr(node, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            merge(current, value, path)
        else:
            setattr(node, key, _coerce(value, hints[key], path))
    return node


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def parse_override(text: str) -> tuple[list[str], Any]:
    """'model.block.type=dbm' → (['model', 'block', 'type'], 'dbm'); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. opt.epochs=3)")
    key, raw = text.split("=", 1)
    loader = StrictYamlLoader(raw, source=f"override '{text}'")  # no aliases, no deep nesting
    try:
        value = loader.get_single_data() if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override '{text}': the value is not valid YAML ({problem})") from None
    except UnsafeInputError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:  # an int over Python's digit limit, a bad date
        raise ConfigError(f"override '{_clip(text)}': the value {unreadable_value(exc)}") from None
    finally:
        loader.dispose()
    return key.strip().split("."), value


def _clip(text: str, limit: int = 60) -> str:
    """An override as typed, shortened when it is very long (a 5000-digit number)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def apply_override(cfg: Any, text: str) -> None:
    keys, value = parse_override(text)
    node, where = cfg, ""
    for key in keys[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            hints = _type_hints(type(node))
            if key not in hints:
                raise ConfigError(
                    f"unknown config key '{_join(where, key)}' in override '{text}'; "
                    f"did you mean '{_join(where, _nearest(key, hints))}'?"
                )
            node = getattr(node, key)
        where = _join(where, key)
    last = keys[-1]
    if isinstance(node, dict):  # free-form block args
        node[last] = value
    else:
        merge(node, {last: value}, where)


# --------------------------------------------------------------------------------------------
# `_base_` inheritance

BASE_KEY = "_base_"
MAX_BASE_DEPTH = 8  # longest chain of `_base_` files accepted
MAX_BASE_FILES = 32  # base files read for one config, in all (a wide fan-out would explode)


def deep_merge(base: dict, child: dict) -> dict:
    """A new dict: `child` over `base`; mappings merge recursively, lists and scalars replace."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _base_list(data: dict, path: str) -> list[str]:
    """The `_base_` entry of one file as a list of distinct, non-empty file names."""
    bases = data.get(BASE_KEY)
    bases = [] if bases is None else [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names, got {bases!r}")
    if len(set(bases)) != len(bases):
        raise ConfigError(f"{path}: {BASE_KEY} names a file twice: {bases!r}; give each base once")
    return bases


def resolve_bases(data: dict, path: str, load: typing.Callable[[str], Any], chain: tuple = (),
                  files: Optional[list] = None) -> dict:
    """Replace `_base_: file.yaml` (or a list of files, merged in order) by the merged content.

    Base paths are relative to the folder of the including file (`path`). `load(path)` parses
    one YAML file. Every base file read is appended to `files` (when given). Cycles, chains
    deeper than MAX_BASE_DEPTH and more than MAX_BASE_FILES base files in all raise a
    ConfigError naming the chain.
    """
    files = [] if files is None else files
    chain = chain + (os.path.realpath(path),)
    merged: dict = {}
    for rel in _base_list(data, path):
        base_path = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(path)), rel))
        shown = " -> ".join(chain + (base_path,))
        if base_path in chain:
            raise ConfigError(f"{BASE_KEY} cycle: {shown}")
        if len(chain) > MAX_BASE_DEPTH:
            raise ConfigError(f"{BASE_KEY} chain deeper than {MAX_BASE_DEPTH} files: {shown}")
        if len(files) >= MAX_BASE_FILES:
            raise ConfigError(f"{path}: more than {MAX_BASE_FILES} {BASE_KEY} files in all; "
                              "a config inherits from a few bases, not a tree of them")
        if not os.path.exists(base_path):
            raise ConfigError(f"{path}: {BASE_KEY} file not found: {rel} (looked for {base_path})")
        files.append(base_path)
        base = load(base_path)
        if not isinstance(base, dict):
            raise ConfigError(f"{base_path}: the top level must be a mapping of sections")
        merged = deep_merge(merged, resolve_bases(base, base_path, load, chain, files))
    if BASE_KEY not in data:
        return data
    return deep_merge(merged, {k: v for k, v in data.items() if k != BASE_KEY})
