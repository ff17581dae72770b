"""Shared pytest fixtures and markers.

`@pytest.mark.cuda` tests are skipped automatically when no GPU is visible, so the CPU suite
stays green with nothing compiled and mamba-ssm absent.
"""
import contextlib
import logging
import os
import random
from typing import Optional

import numpy as np
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped otherwise)")
    config.addinivalue_line("markers", "slow: longer end-to-end test")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded_rng():
    """Every test starts from the same RNG state, so failures reproduce."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def process_state_restored(monkeypatch, threads: Optional[int] = None, chdir: bool = True):
    """Undo what an in-process CLI run (train.main, eval.main, ...) changes globally: log handlers,
    deterministic-algorithm flags, seeding env vars, the working directory (the repo root while
    inside, unless `chdir` is False) and, when `threads` is given, the torch thread count."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    for name in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    if chdir:
        monkeypatch.chdir(REPO)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(saved_threads)


@pytest.fixture
def in_process(monkeypatch):
    """Run a CLI's main() in this process without leaking its global changes into other tests."""
    with process_state_restored(monkeypatch):
        yield
