"""Checkpoint files: atomic saving, safe loading, and weight loading with per-key diagnostics.

Our training checkpoint (`last.pth`, `epoch_NNN.pth`, `iter_NNNNNNN.pth`) is a dict:
    model, model_ema        state_dicts (no `module.` prefix; the detector's loss normaliser is
                            its `loss_normalizer` buffer; files written before it moved there
                            hold it as a top-level float `loss_normalizer`)
    optimizer, scheduler    state_dicts
    grad_scaler             torch.amp.GradScaler state_dict (opt.amp=fp16), else None
    epoch                   0-based index of the epoch in progress (= completed epochs when
                            epoch_iter is 0; a resumed run starts in this epoch)
    epoch_iter              optimizer steps already done inside `epoch` (0 at epoch ends)
    iteration               optimizer steps done so far
    config                  config_to_dict(cfg)
    rng                     libs.utils.seeding.capture_rng_state(...) of rank 0
    rng_per_rank            the same for every rank of a torchrun job (list, rank order)
`last.pth` is always the newest checkpoint, so `--resume RUN/last.pth` (or `--resume RUN`)
continues from the latest point, whichever kind was written last.
The published ActionFormer / video-mamba-suite `.pth.tar` files hold `state_dict` and
`state_dict_ema` with DataParallel's `module.` prefix; `load_model_weights` reads both formats.
Everything is loaded with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import nn

from libs.engine.checkpoint_schema import CheckpointError, check_weights_meta, weights_problem
from libs.utils.io import atomic_write

PathLike = Union[str, os.PathLike]

logger = logging.getLogger(__name__)

# (EMA key, plain key) of each known format, in order of preference
_WEIGHT_KEYS = {"ours": ("model_ema", "model"), "published": ("state_dict_ema", "state_dict")}


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """`torch.save` atomically: `path` is either the old or the new file, never a torn one."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def save_checkpoint_many(paths: Sequence[PathLike], state: dict[str, Any]) -> None:
    """Serialise `state` once and write the same bytes atomically to every path, in order."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    for path in paths:
        with atomic_write(path, "wb") as f:
            f.write(data)


ITER_CKPT_RE = re.compile(r"^iter_(\d+)\.pth$")


def iteration_checkpoint_name(iteration: int) -> str:
    """`iter_0001234.pth`: zero-padded so that names sort like iterations."""
    return f"iter_{iteration:07d}.pth"


def prune_iteration_checkpoints(folder: PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` `iter_*.pth` files of `folder`; returns the deleted.

    `last.pth` and `epoch_NNN.pth` are never touched. keep_last <= 0 keeps none.
    """
    found = []
    for path in Path(folder).iterdir():
        match = ITER_CKPT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    doomed = [path for _, path in found[: max(len(found) - max(keep_last, 0), 0)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def resolve_checkpoint(path: PathLike, what: str = "checkpoint") -> Path:
    """`path` itself, or `path/last.pth` when `path` is a run folder.

    Raises:
        FileNotFoundError: neither exists (the message starts with `what`, e.g. "--resume
            checkpoint").
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_checkpoint(
    path: PathLike, map_location: Union[str, torch.device] = "cpu", allow_unsafe: bool = False
) -> dict[str, Any]:
    """Load a checkpoint dict with `weights_only=True` (tensors and plain containers only).

    Args:
        allow_unsafe: load with full unpickling, which runs whatever code the file holds. Only for
            files you trust (eval.py --allow-unsafe-checkpoint); ours and the published
            `.pth.tar` files never need it.
    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is truncated/corrupt, holds pickled objects other than tensors and
            plain containers (the message says how to opt in), or is not a dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if allow_unsafe:
        logger.warning("loading %s with full unpickling (allow_unsafe): it can run code", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=not allow_unsafe)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # a broken pickle stream, not a refusal
            raise ValueError(
                f"cannot read checkpoint {path}: truncated or corrupt file "
                f"({_unpickler_reason(exc)})"
            ) from None
        raise ValueError(
            f"checkpoint {path} pickles objects other than tensors and plain containers, so "
            "torch.load(weights_only=True) refused it (loading it would run code from the file: "
            f"{_unpickler_reason(exc)}). If you trust the file, load it "
            "with allow_unsafe=True (eval.py --allow-unsafe-checkpoint)"
        ) from None
    except Exception as exc:  # torch raises RuntimeError / EOFError / zip errors
        raise ValueError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {_first_line(exc)} "
            "(truncated or corrupt file)"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def _unpickler_reason(exc: BaseException) -> str:
    """The informative part of torch's long weights_only message (e.g. 'Unsupported global: ...')."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not|\n|$)", text, re.S)
    return match.group(1).strip() if match else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours parts of its messages
    return text.splitlines()[0] if text else ""


def strip_prefix(
    state_dict: dict[str, torch.Tensor], prefix: str = "module."
) -> dict[str, torch.Tensor]:
    """Remove DataParallel's `module.` prefix from every key that has it."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def extract_weights(
    state: dict[str, Any], prefer_ema: bool = True, source: str = "checkpoint"
) -> tuple[dict, dict]:
    """Pick the model weights out of a loaded checkpoint dict of either format.

    Returns:
        (state_dict without `module.` prefixes, meta) where meta has `format` ("ours" |
        "published" | "state_dict"), `weights` (the key used, e.g. "model_ema"), and `epoch`,
        `loss_normalizer`, `config` when the checkpoint stores them.
    """
    for fmt, (ema_key, plain_key) in _WEIGHT_KEYS.items():
        if ema_key in state or plain_key in state:
            key = (
                ema_key
                if (prefer_ema and ema_key in state) or plain_key not in state
                else plain_key
            )
            meta = {"format": fmt, "weights": key}
            problem = weights_problem(state[key])
            if problem:
                raise CheckpointError(f"checkpoint {source}: key '{key}' {problem}")
            meta.update({k: state[k] for k in ("epoch", "loss_normalizer", "config") if k in state})
            return strip_prefix(state[key]), meta
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return strip_prefix(state), {"format": "state_dict", "weights": "<top level>"}
    raise ValueError(
        f"{source}: no model weights found; expected one of the keys "
        f"{[k for keys in _WEIGHT_KEYS.values() for k in keys]}, got {sorted(state)[:10]}"
    )


def load_model_weights(
    path: PathLike, prefer_ema: bool = True, allow_unsafe: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the model weights of a checkpoint: ours, a published `.pth.tar`, or a bare state_dict.

    The EMA weights are preferred (every evaluation in the reference uses them). See
    `extract_weights` for the returned meta.
    """
    state = load_checkpoint(path, allow_unsafe=allow_unsafe)
    state_dict, meta = extract_weights(state, prefer_ema, source=str(path))
    check_weights_meta(state_dict, meta, path)
    logger.info(
        "loaded '%s' weights (%s format, %d tensors) from %s",
        meta["weights"],
        meta["format"],
        len(state_dict),
        path,
    )
    return state_dict, meta


def load_weights(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """`model.load_state_dict(state_dict)` (strict) with one error listing every bad key.

    Keys in the model's `optional_state_keys` may be absent (the model keeps their value).

    Raises:
        ValueError: listing, per key, shape mismatches, keys missing from the checkpoint and
            keys the model does not have.
    """
    optional = getattr(model, "optional_state_keys", ())  # e.g. the detector's loss normaliser
    expected = {k: v for k, v in model.state_dict().items() if k in state_dict or k not in optional}
    problems = weight_mismatches(expected, state_dict)
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ValueError(
            f"{source}: weights do not fit the model built from the config "
            f"({len(problems)} problem(s)):\n"
            f"  {shown}{more}"
        )
    model.load_state_dict(state_dict)


def weight_mismatches(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]
) -> list[str]:
    """Human-readable lines, one per key, describing how `given` differs from `expected`."""
    lines = []
    for key, value in expected.items():
        if key not in given:
            lines.append(f"{key}: missing from the checkpoint (model has {tuple(value.shape)})")
        elif tuple(given[key].shape) != tuple(value.shape):
            lines.append(
                f"{key}: shape {tuple(given[key].shape)} in the checkpoint, "
                f"{tuple(value.shape)} in the model"
            )
    lines += [
        f"{key}: in the checkpoint but not in the model" for key in given if key not in expected
    ]
    return lines
