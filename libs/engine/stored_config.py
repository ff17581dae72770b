"""The config stored with a run: what resume, eval.py and tools/infer.py take from it.

Every checkpoint train.py writes holds the resolved config (`config`, see checkpoint.py), and
the run folder holds the same as `config.yaml`. Two policies, each in one place here:

- `RESUME_SAFE_KEYS`: the only keys `train.py --resume RUN --opts ...` may change. Resume
  rebuilds the run from the stored config; changing anything else (the model, the data, the
  optimiser, the seed, ...) would no longer continue the same run, so it is an error naming
  the key(s). The safe keys change how long the run goes on, how often it logs, checkpoints and
  evaluates, how many loader workers read the data, and where the features and the annotation
  file now live.
- `GEOMETRY_KEYS`: the keys that change the network or how feature positions map to seconds.
  eval.py / tools/infer.py take them from the checkpoint's stored config: a different value
  from the CONFIG file is replaced with a warning, one asked for with `--opts` is an error (it
  would shift every segment or not fit the weights). Test-time keys (`test.*`, `eval.*`) and
  data locations stay overridable. Published checkpoints store no config: the command-line
  config is used as given.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

from libs.core.config import Config, ConfigError, config_to_dict, load_config

logger = logging.getLogger(__name__)

# train.py --resume: keys --opts may change (a key or a section prefix ending in ".")
RESUME_SAFE_KEYS = (
    "opt.epochs",  # train longer (the cosine follows the new length from the saved step on)
    "opt.print_freq",
    "opt.eval_start_epoch",
    "opt.eval_interval",
    "opt.ckpt_freq",
    "opt.ckpt_every_iters",
    "opt.keep_last",
    "loader.num_workers",  # exact resume holds for any worker count
    "threads",  # CPU threads of this machine
    "dataset.feat_folder",  # the same features, moved
    "dataset.json_file",  # the same annotations, moved (or a relative path from another folder)
)

# never compared: where the config came from and where new runs go (resume keeps its folder)
IGNORED_KEYS = ("config_path", "output_folder")

# eval.py / tools/infer.py: taken from the checkpoint's stored config
GEOMETRY_KEYS = (
    "model.",
    "train.",  # part of the model's construction (build_model(cfg.model, cfg.train, cfg.test))
    "dataset.feat_stride",
    "dataset.num_frames",
    "dataset.default_fps",
    "dataset.max_seq_len",
    "dataset.input_dim",
    "dataset.num_classes",
    "dataset.downsample_rate",
    "dataset.feat_sampling",
)


# under GEOMETRY_KEYS but free at eval / infer: the point buffer holds no weights (a longer
# video needs a longer buffer), and a default fps only fills in videos without one when the
# run had none (a stored default_fps is kept: it overrode the annotations' fps in training)
EVAL_FREE_KEYS = ("model.max_buffer_len_factor",)


def _geometry_diffs(stored: dict, mine: dict) -> dict[str, tuple[Any, Any]]:
    """The GEOMETRY_KEYS values of `mine` that differ from `stored` and must follow it."""
    return {k: (a, b) for k, (a, b) in diff_configs(stored, mine).items()
            if _matches(k, GEOMETRY_KEYS) and k not in EVAL_FREE_KEYS
            and not (k == "dataset.default_fps" and a is None)}


def _matches(key: str, patterns: Iterable[str]) -> bool:
    """`key` is one of `patterns` or lies under a pattern ending in '.' (a section)."""
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def diff_configs(a: dict, b: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted key: (value in a, value in b)} for every leaf that differs (IGNORED_KEYS skipped)."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if name in IGNORED_KEYS:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(diff_configs(va, vb, name + "."))
        elif va != vb:
            out[name] = (va, vb)
    return out


def _override_keys(opts: Sequence[str]) -> list[str]:
    return [text.split("=", 1)[0].strip() for text in opts]


def _describe(diffs: dict[str, tuple[Any, Any]], keys: Iterable[str]) -> str:
    return "; ".join(f"{k}: {diffs[k][0]!r} -> {diffs[k][1]!r}" for k in keys)


def config_from_stored(stored: dict, source: str, overrides: Sequence[str] = ()) -> Config:
    """The Config of a stored config dict (plus `overrides`); its config_path is kept.

    Raises:
        ConfigError: the stored config no longer loads (naming `source`), or a bad override.
    """
    try:
        cfg = load_config(data=stored, overrides=overrides)
    except ConfigError as exc:
        raise ConfigError(f"{source}: the config stored in it does not load: {exc}") from None
    cfg.config_path = str(stored.get("config_path") or "")
    return cfg


def resume_config(
    stored: dict, source: str, overrides: Sequence[str] = (), config_file: Optional[str] = None
) -> Config:
    """The config of a resumed run: the stored one, plus `overrides` of RESUME_SAFE_KEYS only.

    A `config_file` given as well must, with `overrides`, agree with the stored config outside
    RESUME_SAFE_KEYS; where it differs only in safe keys, the stored values are kept (with a
    warning: change them with --opts).

    Raises:
        ConfigError: an override or the config file changes a key outside RESUME_SAFE_KEYS
            (the message names every such key and the allowed ones).
    """
    base = config_to_dict(config_from_stored(stored, source))
    unsafe = _unsafe_overrides(stored, base, overrides)
    if unsafe:
        raise ConfigError(
            f"--resume {source}: --opts may not change {'; '.join(unsafe)} of a run: a resumed "
            f"run keeps its stored config except {', '.join(RESUME_SAFE_KEYS)}. Start a new run "
            "(without --resume) to change it"
        )
    try:
        cfg = load_config(data=stored, overrides=overrides)
    except ConfigError as exc:
        raise ConfigError(f"--resume {source}: --opts: {exc}") from None
    cfg.config_path = str(stored.get("config_path") or "")
    if config_file is not None:
        _check_config_file(config_file, overrides, config_to_dict(cfg), source)
    return cfg


def _unsafe_overrides(stored: dict, base: dict, overrides: Sequence[str]) -> list[str]:
    """'key: stored -> new' for each override outside RESUME_SAFE_KEYS that changes the run
    (restating a stored value is fine; one the schema refuses counts as a change)."""
    out = []
    for text in overrides:
        key = _override_keys([text])[0]
        if _matches(key, RESUME_SAFE_KEYS) or key in IGNORED_KEYS:
            continue
        try:
            diffs = diff_configs(base, config_to_dict(load_config(data=stored, overrides=[text])))
        except ConfigError:  # e.g. an unknown key or a value the schema refuses
            out.append(f"{key} (to {text.split('=', 1)[-1]!r})")
            continue
        out += [f"{k}: {a!r} -> {b!r}" for k, (a, b) in diffs.items()]
    return out


def _check_config_file(config_file: str, overrides: Sequence[str], run: dict, source: str) -> None:
    """CONFIG given with --resume: CONFIG plus --opts must agree with the run beyond safe keys."""
    diffs = diff_configs(run, config_to_dict(load_config(config_file, overrides)))
    unsafe = [k for k in diffs if not _matches(k, RESUME_SAFE_KEYS)]
    if unsafe:
        raise ConfigError(
            f"--resume {source}: CONFIG {config_file} (with --opts) differs from the config "
            f"stored in the run in {', '.join(unsafe)} ({_describe(diffs, unsafe)}); leave "
            "CONFIG out: a resumed run uses its stored config"
        )
    if diffs:
        logger.warning(
            "CONFIG %s differs from the run's stored config in %s: the stored values are kept "
            "(change these with --opts)", config_file, _describe(diffs, diffs),
        )  # fmt: skip


def apply_stored_geometry(
    cfg: Config, stored: Optional[dict], source: str, overrides: Sequence[str] = ()
) -> Config:
    """eval.py / tools/infer.py: `cfg` with every GEOMETRY_KEYS value taken from `stored`.

    Args:
        cfg: the command-line config (CONFIG plus `overrides`).
        stored: the checkpoint's stored config, or None (published checkpoints): `cfg` as is.
    Raises:
        ConfigError: an override asks for a geometry value other than the stored one.
    """
    if not stored:
        return cfg
    try:
        stored_cfg = config_to_dict(config_from_stored(stored, source))
    except ConfigError as exc:  # e.g. written by another version of the schema
        logger.warning("%s; using the command-line config as given", exc)
        return cfg
    mine = config_to_dict(cfg)
    diffs = _geometry_diffs(stored_cfg, mine)
    if not diffs:
        return cfg
    given = [o if o in diffs else o + "." for o in _override_keys(overrides)]  # keys, sections
    asked = [k for k in diffs if _matches(k, given)]
    if asked:
        raise ConfigError(
            f"--opts {', '.join(asked)} conflicts with the config stored in the checkpoint "
            f"{source} ({_describe(diffs, asked)}): these keys change the network or the time "
            "axis, so they always come from the checkpoint; drop them from --opts"
        )
    logger.warning(
        "the config differs from the one stored in %s in %s: using the stored values",
        source, _describe(diffs, diffs),
    )  # fmt: skip
    for key, (value, _) in diffs.items():
        _set_path(mine, key, value)
    out = config_from_stored(mine, source)
    out.config_path = cfg.config_path
    return out


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value
