"""Diagnosis of a detector's errors as DETAD (Alwassel et al., ECCV 2018) analyses them.

`diagnose(gt, results, split, protocol)` returns DETAD's numbers (false-positive profile and
removal gains, false-negative rates, sensitivity per characteristic); `run_diagnosis(...)`
also writes ``diagnosis.json``, the three figures and ``report.html`` into a folder.
"""

from libs.diagnosis.api import diagnose
from libs.diagnosis.characteristics import PROTOCOLS, parse_bins, protocol_bins
from libs.diagnosis.false_positive import ERROR_TYPES

__all__ = ["ERROR_TYPES", "PROTOCOLS", "diagnose", "parse_bins", "protocol_bins"]
