"""`val_history.jsonl`: one JSON line per evaluation during training, the run's validation record.

Each line: {"epoch": 1-based epoch, "step": optimizer steps done, "tiou": [T], "mAP": [T],
"average_mAP": x, "wall_time": unix time of the evaluation's end, "eval_seconds": its
duration, "ap": [T][C], "class_names": [C], "protocol": {...}} (fractions). The file is
rewritten atomically with every new line, so it never holds a torn line; a resumed run first
drops the lines of epochs after its checkpoint, so a run killed anywhere ends with the same
history as an uninterrupted one (up to the two timing fields).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from libs.evaluation import EvalResult
from libs.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

HISTORY_FILE = "val_history.jsonl"
SUMMARY_KEYS = ("epoch", "tiou", "mAP", "average_mAP")  # the part metrics.json repeats
TIMING_KEYS = ("wall_time", "eval_seconds")  # differ between otherwise identical runs


def make_record(epoch: int, step: int, result: EvalResult, seconds: float) -> dict[str, Any]:
    """One history line for `result`, evaluated after epoch `epoch` (1-based) at `step`."""
    return {
        "epoch": epoch,
        "step": step,
        "tiou": [float(t) for t in result.tiou],
        "mAP": [float(m) for m in result.mAP],
        "average_mAP": float(result.average_mAP),
        "wall_time": time.time(),
        "eval_seconds": round(seconds, 3),
        "ap": np.asarray(result.ap, dtype=np.float64).tolist(),
        "class_names": list(result.class_names),
        "protocol": dict(result.protocol or {}),
    }


def record_result(record: dict[str, Any]) -> EvalResult:
    """The EvalResult a history line (or a best.pth `best_on_val` record) describes."""
    return EvalResult(
        tiou=list(record["tiou"]),
        mAP=list(record["mAP"]),
        average_mAP=float(record["average_mAP"]),
        ap=np.asarray(record["ap"], dtype=np.float64),
        class_names=list(record["class_names"]),
        protocol=dict(record["protocol"]),
    )


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """{"epoch", "tiou", "mAP", "average_mAP"} of a history line (metrics.json "last" / "best")."""
    return {key: record[key] for key in SUMMARY_KEYS}


def best_record(records: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The highest average mAP; the earlier epoch on ties (records are in epoch order)."""
    best = None
    for record in records:
        if best is None or record["average_mAP"] > best["average_mAP"]:
            best = record
    return best


class ValHistory:
    """The lines of a run folder's `val_history.jsonl`, in epoch order (rank 0 only)."""

    def __init__(self, run_folder: Path, completed_epochs: int):
        """Read the file, keeping only epochs <= `completed_epochs` (a resumed checkpoint's)."""
        self.path = Path(run_folder) / HISTORY_FILE
        self.records: list[dict[str, Any]] = []
        if self.path.is_file():
            lines = [line for line in self.path.read_text().splitlines() if line.strip()]
            records = [self._parse(line, i) for i, line in enumerate(lines, 1)]
            self.records = [r for r in records if r["epoch"] <= completed_epochs]
            if len(self.records) < len(records):
                logger.info(
                    "%s: dropped %d evaluation(s) after epoch %d (resuming from there)",
                    self.path, len(records) - len(self.records), completed_epochs,
                )  # fmt: skip
                self._write()

    def _parse(self, line: str, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path} line {number}: not valid JSON ({exc})") from None
        missing = [k for k in (*SUMMARY_KEYS, "ap", "class_names", "protocol") if k not in record]
        if missing:
            raise ValueError(
                f"{self.path} line {number}: missing {missing}; delete the file to start the "
                "history afresh"
            )
        return record

    def has(self, epoch: int) -> bool:
        return any(r["epoch"] == epoch for r in self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Add (or replace) the line of `record["epoch"]` and rewrite the file atomically."""
        self.records = [r for r in self.records if r["epoch"] != record["epoch"]] + [record]
        self.records.sort(key=lambda r: r["epoch"])
        self._write()

    def _write(self) -> None:
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        atomic_write_text(self.path, text)

    @property
    def last(self) -> Optional[dict[str, Any]]:
        return self.records[-1] if self.records else None

    @property
    def best(self) -> Optional[dict[str, Any]]:
        return best_record(self.records)
