"""Structure checks of a loaded checkpoint dict, after the `weights_only` load.

`torch.load(weights_only=True)` guarantees a checkpoint holds only tensors and plain containers,
not that they are the right ones: `rng: {}`, `config: "text"`, weights that are not tensors, a
negative epoch or a junk scheduler state would otherwise end in a traceback deep inside torch,
or in silent nonsense. These checks name the file and every bad key (the layout is in
checkpoint.py); one `CheckpointError` lists all problems found.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch


class CheckpointError(ValueError):
    """A checkpoint file whose contents do not have the layout its reader needs."""


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def weights_problem(value: Any) -> Optional[str]:
    """Why `value` is not a state_dict ({str: Tensor}, non-empty), or None."""
    if not isinstance(value, dict):
        return f"is a {type(value).__name__}, expected a dict of tensors"
    if not value:
        return "is empty"
    bad = [str(k) for k, v in value.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        return f"holds {len(bad)} entries that are not tensors (e.g. {bad[0]!r})"
    return None


def rng_problem(value: Any) -> Optional[str]:
    """Why `value` is not a `capture_rng_state` dict, or None."""
    if not isinstance(value, dict):
        return f"is a {type(value).__name__}, expected the dict of RNG states"
    missing = [k for k in ("python", "numpy", "torch") if k not in value]
    if missing:
        return f"lacks {missing}"
    py, np_state = value["python"], value["numpy"]
    if not isinstance(py, (tuple, list)) or len(py) != 3:
        return "'python' is not a random.getstate() tuple"
    if not isinstance(np_state, dict) or not isinstance(np_state.get("keys"), torch.Tensor) \
            or not _is_int(np_state.get("pos"), 0) or not isinstance(np_state.get("kind"), str):  # fmt: skip
        return "'numpy' is not a NumPy RNG state (kind, keys tensor, pos, has_gauss, cached_gaussian)"
    if not isinstance(value["torch"], torch.Tensor) or value["torch"].dtype != torch.uint8:
        return "'torch' is not a uint8 tensor (torch.get_rng_state())"
    if "loader" in value and not isinstance(value["loader"], torch.Tensor):
        return "'loader' is not a generator state tensor"
    if not isinstance(value.get("cuda", []), (list, tuple)):
        return "'cuda' is not a list of states"
    return None


def _optimizer_problem(value: Any) -> Optional[str]:
    if not isinstance(value, dict) or not isinstance(value.get("state"), dict) \
            or not isinstance(value.get("param_groups"), list):  # fmt: skip
        return "is not an optimizer state_dict (a dict with 'state' and 'param_groups')"
    for group in value["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            return "has a param group without a 'params' list"
    return None


def _scheduler_problem(value: Any) -> Optional[str]:
    if not isinstance(value, dict):
        return f"is a {type(value).__name__}, expected a scheduler state_dict"
    if not _is_int(value.get("last_epoch"), -1):
        return f"has last_epoch {value.get('last_epoch')!r}, expected an int >= -1"
    base = value.get("base_lrs")
    if not isinstance(base, list) or not all(_is_number(x) and x >= 0 for x in base):
        return "has no list of finite 'base_lrs'"
    return None


def _rng_per_rank_problem(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        return "is not a non-empty list of RNG states (one per rank)"
    for rank, item in enumerate(value):
        problem = rng_problem(item)
        if problem:
            return f"[{rank}] {problem}"
    return None


def _type_check(expected: type, what: str) -> Callable[[Any], Optional[str]]:
    return lambda v: None if isinstance(v, expected) else f"is a {type(v).__name__}, expected {what}"


def _count(v: Any) -> Optional[str]:
    return None if _is_int(v, 0) else f"is {v!r}, expected an int >= 0"


# key: (required for resume, check); the order is the order of the messages
_TRAINING_SCHEMA: dict[str, tuple[bool, Callable[[Any], Optional[str]]]] = {
    "model": (True, weights_problem),
    "model_ema": (True, weights_problem),
    "optimizer": (True, _optimizer_problem),
    "scheduler": (True, _scheduler_problem),
    "grad_scaler": (False, lambda v: None if v is None or isinstance(v, dict) else "is not a dict"),
    "epoch": (True, _count),
    "epoch_iter": (False, _count),
    "iteration": (True, _count),
    "config": (False, _type_check(dict, "the config as a dict")),
    "rng": (True, rng_problem),
    "rng_per_rank": (False, _rng_per_rank_problem),
    "loss_normalizer": (False, lambda v: None if _is_number(v) else f"is {v!r}, expected a number"),
    "best_on_val": (False, _type_check(dict, "a dict")),
}


def _raise(path: Any, problems: list[str], what: str, fix: str) -> None:
    if problems:
        raise CheckpointError(
            f"checkpoint {path} is not {what}: " + "; ".join(problems) + f" ({fix})"
        )


def check_training_checkpoint(state: dict, path: Any) -> None:
    """Raise CheckpointError listing every key of `state` that `--resume` cannot use."""
    missing = [k for k, (required, _) in _TRAINING_SCHEMA.items() if required and k not in state]
    if missing:
        raise CheckpointError(
            f"--resume {path}: not a checkpoint written by train.py (missing {missing}); "
            "published weights can be evaluated with eval.py but not resumed"
        )
    problems = []
    for key, (_, check) in _TRAINING_SCHEMA.items():
        problem = check(state[key]) if key in state else None
        if problem:
            problems.append(f"key '{key}' {problem}")
    _raise(path, problems, "a usable training checkpoint",
           "a damaged or hand-edited file: resume from another checkpoint of the run")


def check_weights_meta(state_dict: Any, meta: dict, path: Any) -> None:
    """The parts of a checkpoint eval.py / infer.py read: the weights, `epoch` and `config`."""
    problems = []
    problem = weights_problem(state_dict)
    if problem:
        problems.append(f"key '{meta.get('weights')}' {problem}")
    for key, check in (("epoch", _count), ("config", _type_check(dict, "the config as a dict")),
                       ("loss_normalizer", _TRAINING_SCHEMA["loss_normalizer"][1])):  # fmt: skip
        problem = check(meta[key]) if key in meta else None
        if problem:
            problems.append(f"key '{key}' {problem}")
    _raise(path, problems, "a usable checkpoint", "a damaged or hand-edited file")
