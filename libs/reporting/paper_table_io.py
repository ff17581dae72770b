"""What tools/paper_table.py reads and writes: every output is checked before the runs are read.

- `check_table_outputs`: `--out` / `--json` are neither a file the command reads (a run's
  `metrics.json`, `eval_metrics.json`, `config.yaml`, `val_history.jsonl`, or a metrics file
  given by name), nor inside a run folder given, nor each other, nor a symbolic link, FIFO or
  folder (libs.utils.paths.check_outputs / check_outside).
- `write_tables`: the Markdown and the JSON written atomically (libs.utils.io).
"""

import json
import os
from pathlib import Path
from typing import Optional

from libs.utils.io import atomic_write_text
from libs.utils.paths import check_outputs, check_outside

RUN_FILES = ("metrics.json", "eval_metrics.json", "config.yaml", "val_history.jsonl")  # read from a run


def run_inputs(runs: list[str]) -> list[tuple[str, str]]:
    """(name, path) of every file paper_table may read for the given runs (folders or files)."""
    inputs = []
    for run in runs:
        folder = run if os.path.isdir(run) else os.path.dirname(run) or "."
        if not os.path.isdir(run):
            inputs.append((f"input {run}", run))
        inputs += [(f"run file {name} of {folder}", os.path.join(folder, name)) for name in RUN_FILES]
    return inputs


def check_table_outputs(runs: list[str], out: Optional[str], json_out: Optional[str]) -> None:
    """ValueError (one line) when an output would replace an input, lie in a run folder, or
    be the other output; nothing is read or written before this check."""
    outputs = [("--out", out), ("--json", json_out)]
    check_outputs(run_inputs(runs), outputs)
    for run in runs:
        check_outside(outputs, run if os.path.isdir(run) else None, "run folder")


def write_tables(out: Optional[str], json_out: Optional[str], text: str, rows: list[dict]) -> None:
    """The tables as Markdown to `out`, the summary rows as JSON to `json_out` (each atomically)."""
    for path, content in ((out, text + "\n"), (json_out, json.dumps(rows, indent=1) + "\n")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, content)
