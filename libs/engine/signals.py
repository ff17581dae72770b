"""Ctrl-C / SIGTERM during training: finish the step, write `last.pth`, stop with a resume hint."""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

from libs.engine import distributed as dist_utils

logger = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM stopped training after a step; `last.pth` holds a resumable checkpoint."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


class StopRequest:
    """SIGINT/SIGTERM → finish the current step, checkpoint, stop; a second Ctrl-C aborts at once.

    Stopping only between steps keeps the checkpoint consistent (never between the optimizer
    step and the scheduler / EMA updates). Handlers are only installed from the main thread.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "%s received: stopping after the current iteration with a checkpoint "
            "(press Ctrl-C again to abort without one)",
            signal.Signals(signum).name,
        )


def resume_command(checkpoint: Path) -> str:
    """The command line that continues this run from `checkpoint`.

    No CONFIG and no --opts: the checkpoint stores the run's whole config (overrides included),
    and a resumed run is rebuilt from it (libs/engine/stored_config.py).
    """
    world = dist_utils.get_world_size()
    launcher = f"torchrun --nproc_per_node {world}" if world > 1 else "python"
    return f"{launcher} train.py --resume {shlex.quote(str(checkpoint))}"


class NothingToTrain(ValueError):
    """A resumed run whose checkpoint already finished every epoch of its config."""
