"""Value checks of a merged config: the ranges that the schema's types cannot say.

`check_values(cfg)` runs in `libs.core.config._finalize`, so every way of loading a config (a
YAML file, --opts, a checkpoint's stored config) is checked before anything is built or any run
folder exists. A bad value is a `ConfigError` whose message names the key, the accepted range
and the value given, and whose `.key` lets `load_config` say whether the value came from the
file or from an --opts override.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator

from libs.core.config_merge import ConfigError

# caps on the integers that size tensors / layers: far above any published setting, far below
# what would end in an allocation failure (or an int64 overflow) deep inside torch
MAX_INPUT_DIM = 65536  # feature channels
MAX_WIDTH = 16384  # embd_dim / fpn_dim / head_dim
MAX_CLASSES = 65536
MAX_LEN = 2**20  # max_seq_len, window sizes
MAX_LAYERS = 64  # arch entries, head layers, scale factor
MAX_KERNEL = 1024
MAX_THREADS = 4096


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
# ranges


@dataclasses.dataclass(frozen=True)
class Range:
    """An accepted range: `check(value)` and its words ("> 0", "in [0, 1]")."""

    check: Callable[[Any], bool]
    words: str


def gt(lo: float) -> Range:
    return Range(lambda v: v > lo, f"> {lo}")


def ge(lo: float) -> Range:
    return Range(lambda v: v >= lo, f">= {lo}")


def within(lo: float, hi: float, left: str = "[", right: str = "]") -> Range:
    """The interval between lo and hi; "(" / ")" leave an end out."""
    def check(v: Any) -> bool:
        above = v > lo if left == "(" else v >= lo
        below = v < hi if right == ")" else v <= hi
        return above and below

    return Range(check, f"in {left}{lo}, {hi}{right}")


def count(lo: int, hi: int) -> Range:
    return Range(lambda v: lo <= v <= hi, f"an integer in {lo} .. {hi}")


UNIT = within(0, 1)
INT64 = Range(lambda v: -2**63 <= v < 2**63, "an integer in -2**63 .. 2**63 - 1")

# one number per key (None, where the schema allows it, is not checked)
SCALARS: dict[str, Range] = {
    "dataset.feat_stride": gt(0),
    "dataset.num_frames": gt(0),
    "dataset.default_fps": gt(0),
    "dataset.input_dim": count(1, MAX_INPUT_DIM),
    "dataset.num_classes": count(1, MAX_CLASSES),
    "dataset.downsample_rate": ge(1),
    "dataset.max_seq_len": count(1, MAX_LEN),
    "dataset.trunc_thresh": UNIT,
    "loader.batch_size": ge(1),
    "loader.num_workers": ge(0),
    "model.scale_factor": count(1, MAX_LAYERS),
    "model.embd_kernel_size": count(1, MAX_KERNEL),
    "model.embd_dim": count(1, MAX_WIDTH),
    "model.fpn_dim": count(1, MAX_WIDTH),
    "model.head_dim": count(1, MAX_WIDTH),
    "model.head_kernel_size": count(1, MAX_KERNEL),
    "model.head_num_layers": count(1, MAX_LAYERS),
    "model.max_buffer_len_factor": within(0, 1000, "("),
    "train.center_sample_radius": ge(0),
    "train.cls_prior_prob": within(0, 1, "(", ")"),
    "train.init_loss_norm": gt(0),
    "train.label_smoothing": within(0, 1, "[", ")"),
    "test.pre_nms_thresh": UNIT,
    "test.pre_nms_topk": ge(1),
    "test.iou_threshold": UNIT,
    "test.min_score": UNIT,
    "test.max_seg_num": ge(1),
    "test.nms_sigma": gt(0),
    "test.duration_thresh": ge(0),
    "test.voting_thresh": UNIT,
    "opt.momentum": UNIT,
    "opt.weight_decay": ge(0),
    "opt.learning_rate": gt(0),
    "opt.epochs": ge(0),
    "opt.warmup_epochs": ge(0),
    "opt.schedule_gamma": gt(0),
    "opt.ema_decay": UNIT,
    "opt.ckpt_every_iters": ge(0),
    "opt.accumulate": ge(1),
    "threads": count(0, MAX_THREADS),
    "seed": Range(lambda v: 0 <= v < 2**63, "an integer in 0 .. 2**63 - 1"),  # + rank < 2**64
}

# every element of a list key
ELEMENTS: dict[str, Range] = {
    "model.arch": count(0, MAX_LAYERS),
    "opt.schedule_steps": ge(0),
}


def show(value: Any) -> str:
    """repr, with a huge integer shortened (its digits would fill the terminal)."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def check_range(key: str, value: Any, rule: Range) -> None:
    if value is not None and not rule.check(value):
        raise value_error(key.split("[")[0], f"{key} must be {rule.words}, got {show(value)}")


def leaves(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every non-container value under `key` (lists, dicts, dataclasses)."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from leaves(f"{key}[{i}]", item)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(f"{key}.{name}", item)
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from leaves(f"{key}.{f.name}" if key else f.name, getattr(value, f.name))
    else:
        yield key, value


def check_finite(key: str, value: Any) -> None:
    """Every float of the config (lists and block args included) is finite."""
    for name, leaf in leaves(key, value):
        if isinstance(leaf, float) and not math.isfinite(leaf):
            raise value_error(name.split("[")[0], f"{name} must be a finite number, got {leaf!r}")


# ---------------------------------------------------------------------------------------------
# keys with more than a range


def check_crop_ratio(ratio: Any, key: str = "dataset.crop_ratio") -> None:
    """[low, high] fractions of a short video kept by the training crop."""
    if ratio is not None and not 0 < ratio[0] <= ratio[1] <= 1:
        raise value_error(key, f"{key} must be [low, high] with 0 < low <= high <= 1, "
                               f"got {list(ratio)!r}")


def check_regression_range(ranges: Any, key: str = "model.regression_range") -> None:
    for pair in ranges:
        if not 0 <= pair[0] <= pair[1]:
            raise value_error(key, f"{key} must be [min, max] pairs with 0 <= min <= max, "
                                   f"got {list(pair)!r}")


def check_head_empty_cls(classes: Any, num_classes: int, key: str = "train.head_empty_cls") -> None:
    for c in classes:
        if not 0 <= c < num_classes:
            raise value_error(key, f"{key} must be class ids in 0 .. {num_classes - 1} "
                                   f"(dataset.num_classes = {num_classes}), got {c!r}")


# model.block.args that size tensors (an int) or are drop rates; the block checks names and types
BLOCK_SIZES = {"d_state": 1024, "d_conv": 64, "expand": 16, "n_head": 1024,
               "kernel_size": MAX_KERNEL, "expansion_factor": 16}
BLOCK_RATES = ("drop_path", "attn_pdrop", "proj_pdrop")


def check_block_args(args: dict, key: str = "model.block.args") -> None:
    for name, value in args.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue  # a wrong type is the block's error (libs.modeling._check_block_args)
        if name in BLOCK_SIZES and isinstance(value, int):
            check_range(f"{key}.{name}", value, count(1, BLOCK_SIZES[name]))
        elif name in BLOCK_RATES:
            check_range(f"{key}.{name}", value, within(0, 1, "[", ")"))


def check_int64(key: str, value: Any) -> None:
    """Every other integer fits torch's int64 (a bigger one ends in "Overflow when unpacking")."""
    for name, leaf in leaves(key, value):
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            check_range(name, leaf, INT64)


def check_windows(window: Any, key: str = "model.n_mha_win_size") -> None:
    """-1 (global) or a window length, per level or one for all."""
    for i, w in enumerate(window if isinstance(window, tuple) else (window,)):
        check_range(f"{key}[{i}]" if isinstance(window, tuple) else key, w, count(-1, MAX_LEN))


# ---------------------------------------------------------------------------------------------
# entry point


def check_values(cfg: Any) -> None:
    """Every value check of the config; the first problem raises.

    Raises:
        ConfigError: with `.key` the dotted key of the bad value.
    """
    check_finite("", cfg)
    for key, rule in SCALARS.items():
        check_range(key, _get(cfg, key), rule)
    for key, rule in ELEMENTS.items():
        for i, value in enumerate(_get(cfg, key)):
            check_range(f"{key}[{i}]", value, rule)
    check_tiou_thresholds(cfg.dataset.tiou_thresholds)
    check_crop_ratio(cfg.dataset.crop_ratio)
    check_regression_range(cfg.model.regression_range)
    check_windows(cfg.model.n_mha_win_size)
    check_head_empty_cls(cfg.train.head_empty_cls, cfg.dataset.num_classes)
    check_block_args(cfg.model.block.args)
    check_int64("", cfg)
