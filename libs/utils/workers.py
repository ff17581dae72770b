"""DataLoader worker processes: never more than the cores this process may use."""
from __future__ import annotations

import logging

from libs.utils.threads import usable_cores

logger = logging.getLogger(__name__)
_warned: set[tuple[int, int]] = set()  # (requested, cores) already warned about in this process


def clamp_workers(requested: int) -> int:
    """`loader.num_workers` capped at the usable cores (affinity / cgroup quota), with a warning.

    More worker processes than cores only add start-up time and contention (and a DataLoader
    warning); 0 (load in the main process) is kept as it is. The warning is given once per
    process and setting, not once per loader.
    """
    cores, how = usable_cores()
    if requested <= cores:
        return requested
    if (requested, cores) in _warned:
        return cores
    _warned.add((requested, cores))
    logger.warning("loader.num_workers=%d but this process may use %d cores (%s): using %d "
                   "workers; set loader.num_workers <= %d to silence this",
                   requested, cores, how, cores, cores)
    return cores
