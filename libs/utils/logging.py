"""Logging set-up shared by train.py and eval.py: console plus a log file in the run folder."""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Union

from libs.utils.paths import refuse_symlink

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"
_OURS = "_tal_handler"  # marks the handlers installed here, so a second call replaces them


def setup_logging(
    run_folder: Optional[Union[str, os.PathLike]] = None,
    level: int = logging.INFO,
    file_name: str = "log.txt",
) -> logging.Logger:
    """Send log records to stderr and, when `run_folder` is given, to `run_folder/file_name`.

    Calling it again (a second run in the same process, e.g. in tests) replaces the handlers of
    the previous call instead of duplicating every line. The file is opened in append mode, so
    a resumed run continues the log of the original one.

    Returns:
        The root logger.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT, _DATEFMT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_folder is not None:
        os.makedirs(run_folder, exist_ok=True)
        log_file = os.path.join(run_folder, file_name)
        refuse_symlink(log_file, "log file", "append")  # appending would write wherever it points
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    for handler in handlers:
        setattr(handler, _OURS, True)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    return root
