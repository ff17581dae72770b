"""Seeding and RNG-state capture, so a run and its resumed continuation draw the same numbers."""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any, Optional

import numpy as np
import torch


def fix_random_seed(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed every RNG we use and return a fresh generator for the training loader's shuffling.

    Seeds Python `random`, NumPy, torch (CPU and all GPUs) and `PYTHONHASHSEED`. With
    `deterministic`, cuDNN autotuning is off and torch's deterministic algorithms are requested
    with `warn_only=True` (ActionFormer's choice): an op without a deterministic kernel warns
    instead of aborting a long run. The custom CUDA kernels are outside torch's checks anyway.

    Args:
        seed: the config's `seed`.
        deterministic: request deterministic kernels (cheap on CPU; slightly slower on GPU).

    Raises:
        ValueError: `seed` is not an integer in 0 .. 2**64 - 1.

    Returns:
        A `torch.Generator` seeded with `seed`, owned by the training loader so that shuffling
        does not depend on how much of the global RNG model construction consumed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in 0 .. 2**64 - 1 (what torch.manual_seed "
                         f"takes), got {seed!r:.40}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy only accepts 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # cuBLAS needs a fixed workspace for reproducible GEMMs (CUDA >= 10.2)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def derive_seed(base: int, *keys: Any) -> int:
    """A 63-bit seed that depends only on `base` and `keys` (e.g. ("loader", epoch, rank)).

    Used to re-seed the training loader at every epoch: an epoch's shuffling and worker seeds
    then depend on (seed, epoch, rank) alone, never on how far a generator advanced before, which
    is what makes a mid-epoch resume replay the same batches. A hash (not `base + epoch`) keeps
    the seeds of neighbouring runs and epochs unrelated.
    """
    digest = hashlib.sha256(repr((int(base), *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def capture_rng_state(generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """Snapshot of all RNG states, made only of tensors and plain Python values.

    Plain types keep checkpoints loadable with `torch.load(weights_only=True)`; that is why the
    NumPy state array is stored as a tensor.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: Optional[torch.Generator] = None) -> None:
    """Inverse of `capture_rng_state` (CUDA states only if the device count matches)."""
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def _as_tuple(value: Any) -> Any:
    """`random.setstate` wants nested tuples; a serialisation round trip may give lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
