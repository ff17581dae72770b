"""Model construction: `build_model` is the only function that reads the config layout."""
from __future__ import annotations

import logging

from torch import nn

from libs.core.config import ModelCfg, TestCfg, TrainCfg, window_sizes

from .backbone import Backbone
from .blocks import BLOCKS, TemporalBlock
from .detector import ActionDetector
from .heads import ClsHead, RegHead
from .neck import FPN1D, FPNIdentity
from .points import PointGenerator

logger = logging.getLogger(__name__)

__all__ = [
    "ActionDetector", "BLOCKS", "Backbone", "ClsHead", "FPN1D", "FPNIdentity", "PointGenerator", "RegHead",
    "TemporalBlock", "build_model",
]


def build_model(cfg: ModelCfg, train: TrainCfg, test: TestCfg) -> ActionDetector:
    """Map a finalized ModelCfg (+ train / test settings) to an ActionDetector.

    Raises:
        ValueError: derived fields missing (the config did not go through `load_config`), or
            `max_seq_len` not a multiple of the backbone's size divisor.
    """
    if min(cfg.input_dim, cfg.num_classes, cfg.max_seq_len) <= 0:
        raise ValueError("build_model: model.input_dim / num_classes / max_seq_len are unset; build the config with load_config")
    levels = cfg.arch[2] + 1
    backbone = Backbone(
        n_in=cfg.input_dim, n_embd=cfg.embd_dim, n_embd_ks=cfg.embd_kernel_size, arch=cfg.arch,
        scale_factor=cfg.scale_factor, with_ln=cfg.embd_with_ln, block_type=cfg.block.type, block_args=cfg.block.args,
        window_sizes=window_sizes(cfg), max_len=cfg.max_seq_len, use_abs_pe=cfg.use_abs_pe,
    )
    if cfg.max_seq_len % backbone.size_divisor != 0:
        raise ValueError(
            f"dataset.max_seq_len {cfg.max_seq_len} must be a multiple of the backbone size divisor "
            f"{backbone.size_divisor} (pyramid strides × window sizes, model.n_mha_win_size)"
        )
    in_channels = [cfg.embd_dim] * levels
    if cfg.fpn_type == "identity":
        neck: nn.Module = FPNIdentity(in_channels, cfg.fpn_dim, with_ln=cfg.fpn_with_ln)
    elif cfg.fpn_type == "fpn":
        neck = FPN1D(in_channels, cfg.fpn_dim, scale_factor=cfg.scale_factor, with_ln=cfg.fpn_with_ln)
    else:
        raise ValueError(f"model.fpn_type must be 'identity' or 'fpn', got {cfg.fpn_type!r}")
    points = PointGenerator(cfg.max_seq_len * cfg.max_buffer_len_factor, levels, cfg.scale_factor, cfg.regression_range)
    cls_head = ClsHead(
        cfg.fpn_dim, cfg.head_dim, cfg.num_classes, prior_prob=train.cls_prior_prob, num_layers=cfg.head_num_layers,
        kernel_size=cfg.head_kernel_size, with_ln=cfg.head_with_ln, empty_cls=train.head_empty_cls,
    )
    reg_head = RegHead(
        cfg.fpn_dim, cfg.head_dim, levels, num_layers=cfg.head_num_layers, kernel_size=cfg.head_kernel_size,
        with_ln=cfg.head_with_ln,
    )
    model = ActionDetector(backbone, neck, cls_head, reg_head, points, num_classes=cfg.num_classes, train=train, test=test)
    logger.info(
        "built ActionDetector: block %s %s, %d levels, size_divisor %d, %.2fM parameters",
        cfg.block.type, cfg.block.args, levels, model.size_divisor, sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return model
