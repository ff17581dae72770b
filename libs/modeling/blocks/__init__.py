"""Temporal blocks of the backbone, chosen by name from YAML (`model.block.type`).

Importing a block module registers it in BLOCKS; adding a block costs its file and one import here.
"""

from . import base, conv, mamba, window_attn  # noqa: F401  (registration side effect)
from .base import BLOCKS, TemporalBlock

__all__ = ["BLOCKS", "TemporalBlock"]
