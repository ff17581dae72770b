"""Multi-process data-parallel training under `torchrun` (DistributedDataParallel), opt-in.

    torchrun --nproc_per_node N train.py CONFIG [...]   # N processes, one GPU each (NCCL)
    torchrun --nproc_per_node 2 train.py CONFIG --device cpu   # CPU processes (Gloo)
    python train.py CONFIG                                # one process: nothing here is used

Rules (README "Scaling"):
- `loader.batch_size` is the GLOBAL batch: each rank loads `batch_size / world_size` videos per
  micro-batch (`/ opt.accumulate` too), and it is an error when that does not divide. The LR
  therefore belongs to the global batch, and a run gives the same updates whatever N is.
- The detector's loss normaliser counts the positive points of the whole global batch: the
  engine all-reduces num_pos (see `train_step.train_step`), so every rank keeps the same value.
- Rank 0 alone logs to files, writes checkpoints and evaluates; the other ranks wait.
Without torchrun's environment (`WORLD_SIZE` unset or 1) every helper is a cheap no-op.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

# evaluation on rank 0 can take minutes while the other ranks wait in a collective
_TIMEOUT = datetime.timedelta(minutes=60)


def env_world_size() -> int:
    """World size announced by torchrun (1 for a plain `python train.py`)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL for CUDA, Gloo for CPU) when WORLD_SIZE > 1.

    Args:
        device: the device chosen for a single process (`cuda` or `cpu`).

    Returns:
        This rank's device: `cuda:LOCAL_RANK` for CUDA, else `device` unchanged.
    """
    if env_world_size() <= 1 or is_distributed():
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=_TIMEOUT)
    logger.info("rank %d/%d joined the %s process group", get_rank(), get_world_size(), backend)
    return device


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0: the process that logs to files, checkpoints and evaluates."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def per_rank_batch_size(global_batch: int, world_size: int, accumulate: int = 1) -> int:
    """Videos per rank and micro-batch for a global `loader.batch_size`.

    Raises:
        ValueError: global_batch is not a multiple of world_size * accumulate.
    """
    parts = world_size * accumulate
    if accumulate < 1:
        raise ValueError(f"opt.accumulate must be >= 1, got {accumulate}")
    if global_batch % parts != 0:
        raise ValueError(
            f"loader.batch_size={global_batch} is the global batch and must be divisible by "
            f"world_size ({world_size}) x opt.accumulate ({accumulate}) = {parts}"
        )
    return global_batch // parts


def all_reduce_sum(value: float, device: torch.device) -> float:
    """Sum of a host number over all ranks (the value itself without a process group)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is set on at least one rank (e.g. a Ctrl-C seen by one process)."""
    if not is_distributed():
        return flag
    return all_reduce_sum(float(flag), device) > 0


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of rank `src` on every rank (e.g. the run folder chosen by rank 0)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> Optional[list]:
    """Every rank's `obj` on rank 0 (ordered by rank); None on the other ranks."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, out, dst=0)
    return out


def wrap_model(model: nn.Module) -> nn.Module:
    """DistributedDataParallel around `model` in a process group, else `model` itself.

    DDP broadcasts rank 0's parameters and buffers here, so ranks seeded differently (for
    different crops and dropout masks) still start from rank 0's initialisation. `device_ids`
    stays None: the engine moves each `Batch` itself, and DDP's input mover would rebuild the
    dataclass and push the per-video metadata (`samples`) to the GPU too. The buffers (point
    grids) are constant, so they are not re-broadcast before every forward.
    """
    if not is_distributed():
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=None, broadcast_buffers=False)
