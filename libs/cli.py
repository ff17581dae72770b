"""What the command-line entry points share: options, device choice, the detector from a
checkpoint, the files a config makes a command read (`config_inputs`, for the output checks),
and the error wrapper that turns a bad input into one `error: ...` line.

Used by train.py, eval.py and tools/*.py; no entry point imports another entry point.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from libs.core.config import Config, config_files
from libs.engine.checkpoint import load_model_weights, load_weights, resolve_checkpoint
from libs.engine.stored_config import apply_stored_geometry
from libs.modeling import build_model
from libs.utils.threads import AUTO_HELP, cli_count

logger = logging.getLogger(__name__)

# what every entry point reports as `error: <message>` with exit status 2: ConfigError,
# FeatureFileError and MissingKeyError are ValueErrors; OSError: missing / unwritable files
USER_ERRORS = (ValueError, OSError)


# the config keys that name a file a command reads (a one-file .h5 dataset.feat_folder too)
CONFIG_FILE_KEYS = (("dataset", "json_file"), ("test", "ext_score_file"), ("eval", "blocked_videos_file"))


def config_inputs(cfg: Config, config: str, name: str = "config") -> list[tuple[str, Optional[str]]]:
    """The config file (as `name`), every `_base_` file it inherits and the files its keys name:
    the inputs of eval.py, tools/rescore.py and tools/infer.py that no output may replace."""
    files = config_files(config)
    inputs: list[tuple[str, Optional[str]]] = [(name, config)]
    inputs += [(f"config file (_base_ of {config})", base) for base in files[1:]]
    for section, key in CONFIG_FILE_KEYS:
        inputs.append((f"{section}.{key}", getattr(getattr(cfg, section), key) or None))
    if cfg.dataset.feat_folder and Path(cfg.dataset.feat_folder).is_file():
        inputs.append(("dataset.feat_folder", cfg.dataset.feat_folder))  # one .h5 file
    return inputs


def add_opts_arg(parser: argparse.ArgumentParser, example: str) -> None:
    """`--opts KEY=VALUE ...`: config overrides."""
    parser.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=f"config overrides, e.g. {example}",
    )


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (fps, strides); otherwise one `error:` line, exit 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def tiou_threshold(text: str) -> float:
    """argparse type: a tIoU threshold in (0, 1]; otherwise one `error:` line, exit 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 < value <= 1):  # also rejects NaN
        raise argparse.ArgumentTypeError(f"a tIoU threshold must lie in (0, 1], got {text!r}")
    return value


def _whole(text: str) -> Optional[int]:
    """`text` as an int, None when it is not one (or has more digits than Python reads)."""
    try:
        return int(text)
    except ValueError:
        return None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (counts, top-k); otherwise one `error:` line, exit 2."""
    value = _whole(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {_shown(text)}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1] (scores, tIoU floors); otherwise one `error:` line."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {_shown(text)}")
    return value


def seed_arg(text: str) -> int:
    """argparse type: a seed torch takes, 0 .. 2**63 - 1 (the config key `seed`'s range)."""
    value = _whole(text)
    if value is None or not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(
            f"a seed must be a whole number in 0 .. 2**63 - 1, got {_shown(text)}")
    return value


def deprecation(old: str, new: str) -> None:
    """One stderr line: `old` still works for one release, `new` is the name to use."""
    print(f"warning: {old} is deprecated and will be removed in the next release; use {new}",
          file=sys.stderr)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Let the old flag `old` keep working as the already-added flag `new` (same dest, nargs,
    type, choices), with a deprecation line on stderr each time it is used (docs/cli.md)."""
    target = parser._option_string_actions[new]  # argparse has no public lookup

    class DeprecatedAlias(argparse.Action):
        def __call__(self, prs, namespace, values, option_string=None):
            deprecation(old, new)
            target(prs, namespace, values, new)

    parser.add_argument(
        old, action=DeprecatedAlias, dest=target.dest, nargs=target.nargs, const=target.const,
        type=target.type, choices=target.choices, metavar=target.metavar,
        default=argparse.SUPPRESS, help=argparse.SUPPRESS,
    )  # fmt: skip
    target.help = f"{target.help or ''} (formerly {old})".strip()


def add_results_and_gt(parser: argparse.ArgumentParser, results_help: str) -> None:
    """`RESULTS --gt GT_JSON`: what is evaluated is positional, the ground truth is `--gt` (every
    command). The old `GT_JSON RESULTS` form is parsed too; `resolve_gt` sorts it out."""
    parser.add_argument("results", help=results_help)
    parser.add_argument("old_results", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gt", metavar="GT_JSON",
                        help="annotation JSON with a 'database' key (required)")


def resolve_gt(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """`RESULTS --gt GT` (new) or `GT RESULTS` (old, one release, with a deprecation line)."""
    if args.old_results is not None:
        if args.gt is not None:
            parser.error("give RESULTS --gt GT_JSON (one positional input), not two files")
        deprecation("the form GT_JSON RESULTS", "RESULTS --gt GT_JSON")
        args.gt, args.results, args.old_results = args.results, args.old_results, None
    if args.gt is None:
        parser.error("the ground truth is missing: give RESULTS --gt GT_JSON")
    return args


class _DistinctTious(argparse.Action):
    """`--tiou`: each threshold once (a repeated one would be evaluated, and averaged, twice)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for i, value in enumerate(values):
            if value in values[:i]:
                parser.error(f"{option_string} gives {value!r} twice; give each threshold once")
        setattr(namespace, self.dest, values)


def add_tiou_arg(parser: argparse.ArgumentParser, default: Optional[list], help: str) -> None:
    """`--tiou T [T ...]`: distinct tIoU thresholds in (0, 1], in every command that takes one."""
    parser.add_argument("--tiou", nargs="+", type=tiou_threshold, default=default, metavar="T",
                        action=_DistinctTious, help=help)


def add_config_tiou_arg(parser: argparse.ArgumentParser) -> None:
    """`--tiou T [T ...]` for a command that reads a config: it replaces dataset.tiou_thresholds."""
    add_tiou_arg(parser, None, "tIoU thresholds to evaluate at (default: the config's "
                               "dataset.tiou_thresholds)")


def opts_with_tiou(opts: Sequence[str], tiou: Optional[Sequence[float]]) -> list[str]:
    """The config overrides plus `--tiou` as `dataset.tiou_thresholds=[...]` (both at once is an error)."""
    if tiou is None:
        return list(opts)
    if any(o.split("=", 1)[0].strip() == "dataset.tiou_thresholds" for o in opts):
        raise ValueError("give the tIoU set once: --tiou or --opts dataset.tiou_thresholds=..., "
                         "not both")
    return [*opts, "dataset.tiou_thresholds=[" + ",".join(repr(t) for t in tiou) + "]"]


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """`--device cpu|cuda` (default: cuda if available)."""
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="default: cuda if available, else cpu",
    )


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """`--threads N`: CPU threads (libs/utils/threads.py; overrides TAL_NUM_THREADS and the config)."""
    parser.add_argument(
        "--threads",
        type=cli_count,
        default=None,
        metavar="N",
        help=f"CPU threads for torch and the C++ kernels; overrides TAL_NUM_THREADS and the "
        f"config key threads ({AUTO_HELP})",
    )


def pick_device(name: Optional[str]) -> torch.device:
    """The requested device, or cuda when available; asking for a missing GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA GPU is visible")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_detector(
    cfg: Config, ckpt: Union[str, Path], device: torch.device, allow_unsafe: bool = False
) -> tuple[nn.Module, Path, dict[str, Any]]:
    """The config's detector with the checkpoint's EMA weights, in eval mode on `device`.

    Args:
        ckpt: a checkpoint (ours or a published `.pth.tar`) or a run folder (its last.pth).
        allow_unsafe: see `libs.engine.checkpoint.load_checkpoint`.
    Returns:
        (model, the checkpoint file used, meta of `load_model_weights`).
    """
    _, model, path, meta = load_detector_and_config(cfg, ckpt, device, (), allow_unsafe)
    return model, path, meta


def load_detector_and_config(
    cfg: Config, ckpt: Union[str, Path], device: torch.device, overrides: Sequence[str] = (),
    allow_unsafe: bool = False,
) -> tuple[Config, nn.Module, Path, dict[str, Any]]:  # fmt: skip
    """`load_detector`, with the config's geometry taken from the checkpoint's stored config.

    Every key of `libs.engine.stored_config.GEOMETRY_KEYS` (model.*, feat_stride, num_frames,
    default_fps, max_seq_len, ...) comes from the config stored in the checkpoint when it has
    one (ours); a different value in CONFIG is replaced with a warning, one in `overrides`
    (the command's --opts) is an error. Published checkpoints store none: `cfg` is used as is.

    Returns:
        (the config to evaluate with, model, the checkpoint file used, meta).
    """
    path = resolve_checkpoint(ckpt)
    state_dict, meta = load_model_weights(path, allow_unsafe=allow_unsafe)
    cfg = apply_stored_geometry(cfg, meta.get("config"), str(path), overrides)
    model = build_model(cfg.model, cfg.train, cfg.test)
    load_weights(model, state_dict, source=str(path))
    return cfg, model.to(device).eval(), path, meta


def run_cli(run: Callable[[], int]) -> int:
    """`run()`, with a user error (bad config, file or value) printed as one `error:` line.

    Returns:
        `run()`'s exit status, or 2 after a user error.
    """
    try:
        return run()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
