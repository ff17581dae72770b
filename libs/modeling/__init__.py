"""Model construction: `build_model` is the only function that reads the config layout."""

from __future__ import annotations

import difflib
import inspect
import logging

from torch import nn

from libs.core.config import ConfigError, ModelCfg, TestCfg, TrainCfg, window_sizes

from .backbone import Backbone
from .blocks import BLOCKS, TemporalBlock
from .detector import ActionDetector
from .heads import ClsHead, RegHead
from .neck import FPN1D, FPNIdentity
from .points import PointGenerator

logger = logging.getLogger(__name__)

__all__ = [
    "BLOCKS",
    "FPN1D",
    "ActionDetector",
    "Backbone",
    "ClsHead",
    "FPNIdentity",
    "PointGenerator",
    "RegHead",
    "TemporalBlock",
    "build_model",
]


def build_model(cfg: ModelCfg, train: TrainCfg, test: TestCfg) -> ActionDetector:
    """Map a finalized ModelCfg (+ train / test settings) to an ActionDetector.

    Raises:
        ConfigError: `model.block.type` is not a registered block, or `model.block.args` has
            an argument the block does not take or a value of the wrong type.
        ValueError: derived fields missing (the config did not go through `load_config`), or
            `max_seq_len` not a multiple of the backbone's size divisor.
    """
    if cfg.block.type not in BLOCKS:
        raise ConfigError(
            f"model.block.type: unknown block type {cfg.block.type!r}; "
            f"available: {sorted(BLOCKS)}"
        )
    _check_block_args(cfg.block.type, cfg.block.args)
    if min(cfg.input_dim, cfg.num_classes, cfg.max_seq_len) <= 0:
        raise ValueError(
            "build_model: model.input_dim / num_classes / max_seq_len are unset; "
            "build the config with load_config"
        )
    backbone = _build_backbone(cfg)
    levels = cfg.arch[2] + 1
    buffer_len = cfg.max_seq_len * cfg.max_buffer_len_factor
    points = PointGenerator(buffer_len, levels, cfg.scale_factor, cfg.regression_range)
    cls_head, reg_head = _build_heads(cfg, train, levels)
    model = ActionDetector(
        backbone, _build_neck(cfg, levels), cls_head, reg_head, points,
        num_classes=cfg.num_classes, train=train, test=test,
    )  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "built ActionDetector: block %s %s, %d levels, size_divisor %d, %.2fM parameters",
        cfg.block.type, cfg.block.args, levels, model.size_divisor, n_params / 1e6,
    )  # fmt: skip
    return model


def _check_block_args(block_type: str, args: dict) -> None:
    """`model.block.args` is forwarded verbatim to the block constructor: check the names and
    the value types (from the defaults) here, instead of a TypeError deep in the backbone."""
    params = inspect.signature(BLOCKS[block_type]).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key, value in args.items():
        if key in ("dim", "stride"):
            raise ConfigError(
                f"model.block.args.{key}: set by the backbone (model.embd_dim, "
                "model.scale_factor); remove it"
            )
        if key == "window_size":
            continue  # the backbone's own error names model.n_mha_win_size
        if key not in params:
            valid = sorted(k for k in params if k not in ("dim", "stride", "window_size"))
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"model.block.args.{key}: block '{block_type}' has no argument {key!r}; "
                f"{hint}valid: {valid}"
            )
        default = params[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):  # an int is fine where a float is expected
            ok = isinstance(value, (int, type(default))) and not isinstance(value, bool)
        else:
            ok = default is None or default is params[key].empty or isinstance(value, type(default))
        if not ok:
            raise ConfigError(
                f"model.block.args.{key}: expected {type(default).__name__} "
                f"(block '{block_type}'), got {type(value).__name__} {value!r}"
            )


def _build_backbone(cfg: ModelCfg) -> Backbone:
    backbone = Backbone(
        n_in=cfg.input_dim, dim=cfg.embd_dim, embd_kernel_size=cfg.embd_kernel_size, arch=cfg.arch,
        scale_factor=cfg.scale_factor, with_ln=cfg.embd_with_ln, block_type=cfg.block.type,
        block_args=cfg.block.args, window_sizes=window_sizes(cfg), max_len=cfg.max_seq_len,
        use_abs_pe=cfg.use_abs_pe,
    )  # fmt: skip
    if cfg.max_seq_len % backbone.size_divisor != 0:  # the reference asserts the same
        raise ValueError(
            f"dataset.max_seq_len {cfg.max_seq_len} must be a multiple of the backbone size "
            f"divisor {backbone.size_divisor} (level strides × windows, model.n_mha_win_size)"
        )
    return backbone


def _build_neck(cfg: ModelCfg, levels: int) -> nn.Module:
    in_channels = [cfg.embd_dim] * levels
    if cfg.fpn_type == "identity":
        return FPNIdentity(in_channels, cfg.fpn_dim, with_ln=cfg.fpn_with_ln)
    if cfg.fpn_type == "fpn":
        return FPN1D(in_channels, cfg.fpn_dim, cfg.scale_factor, with_ln=cfg.fpn_with_ln)
    raise ValueError(f"model.fpn_type must be 'identity' or 'fpn', got {cfg.fpn_type!r}")


def _build_heads(cfg: ModelCfg, train: TrainCfg, levels: int) -> tuple[ClsHead, RegHead]:
    layers, kernel, with_ln = cfg.head_num_layers, cfg.head_kernel_size, cfg.head_with_ln
    cls_head = ClsHead(
        cfg.fpn_dim, cfg.head_dim, cfg.num_classes, train.cls_prior_prob, layers, kernel, with_ln,
        empty_cls=train.head_empty_cls,
    )  # fmt: skip
    return cls_head, RegHead(cfg.fpn_dim, cfg.head_dim, levels, layers, kernel, with_ln)
