"""Log records of the start of a run, kept until its run folder (and log.txt) exists.

train.py checks every input (config, checkpoint, datasets, model) before it creates the run
folder, so a bad input leaves no empty folder behind; what those steps log still belongs at the
top of the run's log.txt. `EarlyLog` shows it on the console at once and buffers it; `replay`
writes the buffered records to the file handlers `setup_logging(run_folder)` installed.
"""

from __future__ import annotations

import logging
from logging.handlers import MemoryHandler

from libs.utils.logging import setup_logging


class EarlyLog:
    """Console logging plus a buffer of every record until `replay()` (rank 0 only)."""

    def __init__(self, enabled: bool = True):
        self.buffer = MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)
        self.enabled = enabled
        if enabled:
            setup_logging(None)  # console, INFO
            logging.getLogger().addHandler(self.buffer)

    def replay(self) -> None:
        """Detach the buffer and write its records to the root logger's file handlers."""
        root = logging.getLogger()
        root.removeHandler(self.buffer)
        files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        for record in self.buffer.buffer:
            for handler in files:
                if record.levelno >= handler.level:
                    handler.handle(record)
        self.buffer.buffer.clear()
        self.buffer.close()
