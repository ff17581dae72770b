"""Optimizer construction with the reference weight-decay groups (reference-spec §6.3).

Modules are matched by class *name* (over the MRO) rather than by `isinstance`, so this file
does not import `libs.modeling` and any class called `MaskedConv1D`, `LayerNorm`, `Scale` or
`AffineDropPath` is treated the same, whatever module defines it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from libs.core.config import OptCfg

logger = logging.getLogger(__name__)

# classes whose `weight` is decayed / not decayed (names, matched anywhere in the MRO)
DECAY_WEIGHT_MODULES = ("Linear", "Conv1d", "MaskedConv1D")
NO_DECAY_WEIGHT_MODULES = ("LayerNorm", "GroupNorm")  # our LayerNorm for [B,C,T] and nn.LayerNorm
NO_DECAY_SCALE_MODULES = ("Scale", "AffineDropPath")
# SSM parameters that video-mamba-suite decays explicitly (it ignores mamba's _no_weight_decay
# tag); its list also names forward_embed / backward_embed, which no block here has
SSM_PARAM_SUFFIXES = ("A_log", "D_b", "D", "A_b_log")


def _is_a(module: nn.Module, class_names: tuple[str, ...]) -> bool:
    return any(cls.__name__ in class_names for cls in type(module).__mro__)


def _classify(module: nn.Module, rel_name: str) -> str | None:
    """'decay' | 'no_decay' | None for a parameter seen from one of its ancestor modules.

    The rules are checked in the reference order (first match wins): bias, whitelisted
    weight, blacklisted weight, scale, relative PE, SSM parameters.
    """
    if rel_name.endswith("bias"):
        return "no_decay"
    if rel_name.endswith("weight") and _is_a(module, DECAY_WEIGHT_MODULES):
        return "decay"
    if rel_name.endswith("weight") and _is_a(module, NO_DECAY_WEIGHT_MODULES):
        return "no_decay"
    if rel_name.endswith("scale") and _is_a(module, NO_DECAY_SCALE_MODULES):
        return "no_decay"
    if rel_name.endswith("rel_pe"):
        return "no_decay"
    if rel_name.endswith(SSM_PARAM_SUFFIXES):
        return "decay"
    return None


def split_decay_names(
    model: nn.Module, decay_ssm_params: bool = True
) -> tuple[list[str], list[str]]:
    """Names of the parameters with and without weight decay.

    A parameter is classified from every module that contains it (its owner and all ancestors,
    as in the reference loop over `named_modules() x named_parameters()`), so e.g. the weight
    of the `nn.Conv1d` inside a `MaskedConv1D` is decayed either way.

    Args:
        model: any module.
        decay_ssm_params: True reproduces video-mamba-suite (A_log / D decayed). False honours
            mamba's `_no_weight_decay` tag: tagged parameters go to the no-decay group.

    Returns:
        (decay names, no-decay names), each sorted.

    Raises:
        ValueError: a parameter matches both groups or none; the message names it.
    """
    decay: set[str] = set()
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        for rel_name, _ in module.named_parameters():
            full_name = f"{module_name}.{rel_name}" if module_name else rel_name
            group = _classify(module, rel_name)
            if group is not None:
                (decay if group == "decay" else no_decay).add(full_name)
    params = dict(model.named_parameters())
    if not decay_ssm_params:
        tagged = {n for n, p in params.items() if getattr(p, "_no_weight_decay", False)}
        decay -= tagged
        no_decay |= tagged
    _check_partition(params, decay, no_decay)
    return sorted(decay), sorted(no_decay)


def _check_partition(params: dict[str, nn.Parameter], decay: set[str], no_decay: set[str]) -> None:
    both = decay & no_decay
    if both:
        raise ValueError(
            f"parameters matched both the decay and the no-decay rules: {sorted(both)}"
        )
    missing = sorted(set(params) - decay - no_decay)
    if missing:
        owner = missing[0].rsplit(".", 1)[0]
        raise ValueError(
            f"{len(missing)} parameter(s) match no weight-decay rule, e.g. '{missing[0]}' (module "
            f"'{owner}'); all: {missing}. Add a rule in libs/engine/optim.py or rename the "
            "parameter."
        )


def param_groups(
    model: nn.Module, weight_decay: float, decay_ssm_params: bool = True
) -> list[dict[str, Any]]:
    """Two optimizer groups: [decayed (weight_decay), not decayed (0.0)].

    See `split_decay_names` for the rules and errors. Parameters keep a sorted-name order, so
    optimizer state lines up across runs and resumes.
    """
    params = dict(model.named_parameters())
    decay, no_decay = split_decay_names(model, decay_ssm_params)
    return [
        {"params": [params[n] for n in decay], "weight_decay": float(weight_decay)},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, opt: OptCfg) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.999, eps 1e-8, torch defaults) or SGD with momentum, on `param_groups`."""
    groups = param_groups(model, opt.weight_decay, opt.decay_ssm_params)
    logger.info(
        "optimizer %s lr %g: %d tensors (%d values) with weight decay %g, %d (%d) without",
        opt.type,
        opt.learning_rate,
        len(groups[0]["params"]),
        sum(p.numel() for p in groups[0]["params"]),
        opt.weight_decay,
        len(groups[1]["params"]),
        sum(p.numel() for p in groups[1]["params"]),
    )
    if opt.type == "AdamW":
        return torch.optim.AdamW(groups, lr=opt.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    if opt.type == "SGD":
        return torch.optim.SGD(groups, lr=opt.learning_rate, momentum=opt.momentum)
    raise ValueError(f"opt.type must be AdamW or SGD, got {opt.type!r}")
