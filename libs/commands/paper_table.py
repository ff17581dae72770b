"""Our runs next to the paper's table: best and last epoch, and the difference to the paper.

    python tools/paper_table.py RUN [RUN ...] [--out table.md] [--json table.json]
    python tools/paper_table.py W.json V.json D.json --dataset thumos [--blocks winattn vim dbm]

A RUN is a train.py run folder (or a metrics JSON in one). Its `config.yaml` names the dataset
and the block; `--dataset` / `--blocks` (matched to the inputs by position) override them, and are
needed for a bare metrics file. Numbers come from the run's `metrics.json` (else the
`eval_metrics.json` run_all writes with eval.py). train.py writes the reported result plus
`"reported": "last" | "best"` (eval.checkpoint) and `"last"` / `"best"`, each `{"epoch", "tiou",
"mAP", "average_mAP"}` (libs/engine/validation.py); a single result `{"tiou", "mAP",
"average_mAP", "protocol": {"checkpoint", "epoch"}}` (eval.py, older runs) counts as the last
epoch unless protocol.checkpoint is best-on-val, and then the run's `val_history.jsonl` (one
line per evaluated epoch), if any, supplies the best epoch.

Prints, per dataset and block, the paper's average mAP, ours at the best and at the last epoch
with the differences, and which of the two the run reports; then, per dataset, the per-tIoU
table (the columns the paper reports) of the reported result next to the paper's row. All
values in %; the average is over THUMOS-14's 0.3:0.1:0.7, or all ten of 0.50:0.05:0.95: a run
evaluated at another tIoU set has its Δ marked `*` and a note under its table.
`--out` / `--json` may be neither an input nor inside a run folder (checked first, written atomically).
"""

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


from libs.core.safe_io import check_regular_file, load_yaml, read_json

from libs.reporting.paper_numbers import (  # noqa: F401 (PAPER: part of this module's interface)
    BLOCK_NAMES, CONFIG_BLOCKS, CONFIG_DATASETS, DATASET_CHOICES, DATASET_NAMES, PAPER, average_note,
    tiou_mismatch,
)
from libs.reporting.paper_table_io import check_table_outputs, write_tables

METRICS_FILES = ("metrics.json", "eval_metrics.json")  # train.py's, then run_all's eval.py output


@dataclass
class Numbers:
    """One evaluation in %: {tIoU (2 decimals): mAP, "avg": average mAP}, and its epoch."""
    maps: dict
    epoch: Optional[int] = None

    @property
    def avg(self) -> float:
        return self.maps["avg"]


@dataclass
class Run:
    """One run's numbers: the best and the last evaluated epoch (either may be unknown)."""
    source: str
    dataset: Optional[str]
    block: Optional[str]
    best: Optional[Numbers]
    last: Optional[Numbers]
    reported: str  # "best" | "last": which of the two the run calls its result
    config_dataset: Optional[str] = None  # dataset.name of its config.yaml
    not_paper: Optional[str] = None  # why the run is not a paper setup (a warning)

    @property
    def result(self) -> Numbers:
        chosen = self.best if self.reported == "best" else self.last
        return chosen or self.last or self.best


def _number(value: Any, where: str) -> float:
    """A finite JSON number (not a bool), else a ValueError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _epoch(data: dict, where: str) -> Optional[int]:
    """`epoch` (or `protocol.epoch`): a whole number >= 0, or None."""
    protocol = data.get("protocol")
    if protocol is not None and not isinstance(protocol, dict):
        raise ValueError(f"{where}: 'protocol' must be an object, got {protocol!r}")
    epoch = data.get("epoch", (protocol or {}).get("epoch"))
    if epoch is None:
        return None
    value = _number(epoch, f"{where} 'epoch'")
    if value < 0 or value != int(value):
        raise ValueError(f"{where} 'epoch': expected a whole number >= 0, got {epoch!r}")
    return int(value)


def parse_numbers(data: Any, where: str) -> Numbers:
    """{"tiou": [...], "mAP": [...], "average_mAP": x[, "epoch": n]} (fractions) -> Numbers (%)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object with tiou / mAP / average_mAP, got {data!r}")
    for key in ("tiou", "mAP", "average_mAP"):
        if key not in data:
            raise ValueError(f"{where}: missing key '{key}' (expected train.py / eval.py metrics)")
    for key in ("tiou", "mAP"):
        if not isinstance(data[key], list):
            raise ValueError(f"{where}: '{key}' must be a list of numbers, got {data[key]!r}")
    if len(data["tiou"]) != len(data["mAP"]):
        raise ValueError(
            f"{where}: 'tiou' has {len(data['tiou'])} values but 'mAP' has {len(data['mAP'])}"
        )
    maps = {
        round(_number(t, f"{where} 'tiou'"), 2): 100.0 * _number(m, f"{where} 'mAP'")
        for t, m in zip(data["tiou"], data["mAP"])
    }
    maps["avg"] = 100.0 * _number(data["average_mAP"], f"{where} 'average_mAP'")
    return Numbers(maps, _epoch(data, where))


def best_from_history(path: Path) -> Optional[Numbers]:
    """The best line (highest average mAP, the earlier epoch on ties) of a val_history.jsonl.

    The rule of `libs.engine.val_history.best_record`, not imported: that module pulls in torch.
    """
    best = None
    with open(check_regular_file(path, "validation history"), encoding="utf-8") as f:  # no FIFO
        for i, line in enumerate(f, 1):
            try:
                record = json.loads(line) if line.strip() else None
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"{path} line {i}: not a JSON record ({type(exc).__name__})") from None
            numbers = None if record is None else parse_numbers(record, f"{path} line {i}")
            best = numbers if best is None or (numbers and numbers.avg > best.avg) else best
    return best


def _numbers_of(data: Any, where: str) -> tuple[Optional[Numbers], Optional[Numbers], str]:
    """(best, last, reported) of a metrics.json in either schema."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a metrics object (train.py / eval.py), got {data!r}")
    if isinstance(data.get("last"), dict) or isinstance(data.get("best"), dict):
        best = parse_numbers(data["best"], f"{where} 'best'") if data.get("best") else None
        last = parse_numbers(data["last"], f"{where} 'last'") if data.get("last") else None
        reported = str(data.get("reported", "best" if last is None else "last"))
        reported = "best" if reported.startswith("best") else "last"
        return best, last, reported
    single = parse_numbers(data, where)
    if (data.get("protocol") or {}).get("checkpoint") == "best-on-val":
        return single, None, "best"
    return None, single, "last"


# the paper's configs (configs/<dataset>_internvideo2_<size>_<block>.yaml) on real features
PAPER_CONFIG = re.compile(r"^(thumos|anet|hacs|fineaction)_internvideo2_\w+_(dbm|vim|winattn)\.ya?ml$")


def _section(tree: dict, key: str, where: str) -> dict:
    """`tree[key]` when it is a mapping ({} when absent), else a ValueError naming the key."""
    value = tree.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{where}: '{key}' must be a mapping, got {value!r}")
    return value or {}


def _not_paper_setup(cfg: dict, dataset: dict) -> Optional[str]:
    """Why the run is not one of the paper's setups (None: it may be; unknown: no claim)."""
    config_path = str(cfg.get("config_path") or "")
    if "synthetic" in str(dataset.get("feat_folder") or ""):
        return "it was trained on synthetic features"
    if config_path and not PAPER_CONFIG.match(Path(config_path).name):
        return f"its config {config_path} is not one of the paper's configs"
    return None


def _run_config(folder: Path) -> tuple[Optional[str], Optional[str], Optional[str], Optional[str]]:
    """(dataset, block) table keys from a run folder's config.yaml, its dataset.name, and why it
    is not a paper setup; all None without a config.yaml."""
    path = folder / "config.yaml"
    if not path.is_file():
        return None, None, None, None
    cfg = load_yaml(path, "run config") or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping of config sections, got {cfg!r}")
    dataset = _section(cfg, "dataset", str(path))
    block = _section(_section(cfg, "model", str(path)), "block", f"{path} 'model'").get("type")
    name = dataset.get("name")
    return (CONFIG_DATASETS.get(name) if isinstance(name, str) else None,
            CONFIG_BLOCKS.get(block) if isinstance(block, str) else None,
            None if name is None else str(name), _not_paper_setup(cfg, dataset))  # fmt: skip


def read_run(path: str) -> Run:
    """A run folder or a metrics JSON -> Run (dataset / block from config.yaml when present)."""
    given = Path(path)
    if given.is_dir():
        found = [given / name for name in METRICS_FILES if (given / name).is_file()]
        if not found:
            raise ValueError(f"{given}: no {' or '.join(METRICS_FILES)} in this run folder")
        folder, metrics = given, found[0]
    elif given.is_file():
        folder, metrics = given.parent, given
    else:
        raise ValueError(f"{path}: no such run folder or metrics file")
    best, last, reported = _numbers_of(read_json(metrics, "metrics"), str(metrics))
    if best is None and (folder / "val_history.jsonl").exists():  # a FIFO: refused, not read
        best = best_from_history(folder / "val_history.jsonl")
    dataset, block, config_dataset, not_paper = _run_config(folder)
    return Run(str(given), dataset, block, best, last, reported, config_dataset, not_paper)


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _delta(ours: Optional[Numbers], paper: Optional[float]) -> Optional[float]:
    return None if ours is None or paper is None else ours.avg - paper


def _signed(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _with_epoch(numbers: Optional[Numbers]) -> str:
    epoch = "" if numbers is None or numbers.epoch is None else f" (ep {numbers.epoch})"
    return "-" if numbers is None else _cell(numbers.avg) + epoch


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def summary_rows(runs: list[Run]) -> list[dict]:
    """One record per run (dataset and block set): paper avg, best / last avg and epoch, deltas."""
    out = []
    for run in runs:
        paper = PAPER[run.dataset].get(run.block, {}).get("avg")
        record = {"dataset": run.dataset, "block": run.block, "source": run.source, "paper": paper}
        for kind in ("best", "last"):
            numbers = getattr(run, kind)
            record[kind] = None if numbers is None else {
                "avg": numbers.avg, "epoch": numbers.epoch, "delta": _delta(numbers, paper),
                "mAP": {str(t): m for t, m in numbers.maps.items() if t != "avg"},
            }  # fmt: skip
        record["reported"] = run.reported
        record["tiou_note"] = tiou_mismatch(run.dataset, run.result.maps)  # None: the paper's tIoU set
        out.append(record)
    return out


def format_summary(runs: list[Run]) -> str:
    """The seed table side by side with each run's best and last average mAP (%)."""
    header = ["dataset", "block", "paper avg", "best avg", "Δbest", "last avg", "Δlast", "reports"]
    rows = []
    for run in runs:
        paper = PAPER[run.dataset].get(run.block, {}).get("avg")
        mark = "*" if tiou_mismatch(run.dataset, run.result.maps) else ""  # not the paper's tIoU set
        rows.append([
            DATASET_NAMES[run.dataset], BLOCK_NAMES.get(run.block, run.block), _cell(paper),
            _with_epoch(run.best), _signed(_delta(run.best, paper)) + mark,
            _with_epoch(run.last), _signed(_delta(run.last, paper)) + mark, run.reported,
        ])  # fmt: skip
    return "\n".join(_markdown(header, rows))


def format_table(dataset: str, rows: list[tuple[str, dict]]) -> str:
    """rows: [(block, our maps {tIoU: mAP %, "avg": avg %})] -> per-tIoU Markdown table with paper
    rows and Δavg (marked * for a run evaluated off the paper's tIoU set)."""
    paper = PAPER[dataset]
    columns = [k for k in next(iter(paper.values())) if k != "avg"]
    header = ["block", "source"] + [f"{t:g}" for t in columns] + ["avg", "Δavg"]
    lines = []
    for block, ours in rows:
        ref = paper.get(block)
        name = BLOCK_NAMES.get(block, block)
        delta = _signed(None if ref is None else ours["avg"] - ref["avg"])
        delta += "*" if tiou_mismatch(dataset, ours) else ""
        lines.append([name, "ours"] + [_cell(ours.get(t)) for t in columns] + [_cell(ours["avg"]), delta])
        if ref is not None:
            lines.append([name, "paper"] + [_cell(ref.get(t)) for t in columns] + [_cell(ref["avg"]), ""])
    return "\n".join(_markdown(header, lines))


def sort_runs(runs: list[Run]) -> list[Run]:
    """The paper's order: datasets THUMOS, ANet, HACS, FineAction; blocks winattn, vim, dbm."""
    order = {name: i for i, name in enumerate(PAPER)}
    blocks = {name: i for i, name in enumerate(BLOCK_NAMES)}
    return sorted(runs, key=lambda r: (order[r.dataset], blocks.get(r.block, len(blocks))))


def render(runs: list[Run]) -> str:
    """The summary table, then one per-tIoU table (reported result vs paper) per dataset."""
    parts = ["average mAP (%): paper, ours at the best and at the last evaluated epoch, differences",
             format_summary(runs)]  # fmt: skip
    for dataset in dict.fromkeys(run.dataset for run in runs):
        rows = [(run.block, run.result.maps) for run in runs if run.dataset == dataset]
        notes = [f"* {run.source}: {tiou_mismatch(dataset, run.result.maps)}" for run in runs
                 if run.dataset == dataset and tiou_mismatch(dataset, run.result.maps)]
        parts += ["", f"{dataset}: mAP (%) of the reported epoch, average over {average_note(dataset)}"
                  + (" (the paper's; rows marked * over their own tIoU set)" if notes else ""),
                  format_table(dataset, rows)] + notes  # fmt: skip
    return "\n".join(parts)


def _split_blocks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--blocks dbm run.json`: the block names come first, the rest are inputs (issue 16)."""
    if not args.blocks:
        return
    n = 0
    while n < len(args.blocks) and args.blocks[n] in BLOCK_NAMES:
        n += 1
    for token in args.blocks[n:]:
        if not Path(token).exists():
            parser.error(
                f"--blocks: '{token}' is neither a block ({', '.join(BLOCK_NAMES)}) nor an "
                "existing run folder or metrics file"
            )
    args.runs = list(args.runs) + args.blocks[n:]
    args.blocks = args.blocks[:n] or None


def _label_runs(parser: argparse.ArgumentParser, args: argparse.Namespace, runs: list[Run]) -> None:
    """Fill each run's dataset / block from --dataset / --blocks, else from its config.yaml."""
    if args.blocks and len(args.blocks) != len(runs):
        parser.error(f"{len(runs)} inputs for {len(args.blocks)} blocks ({' '.join(args.blocks)})")
    default_blocks = list(BLOCK_NAMES) if len(runs) == len(BLOCK_NAMES) else None
    for i, run in enumerate(runs):
        run.dataset = CONFIG_DATASETS.get(args.dataset, args.dataset) or run.dataset  # thumos14 -> thumos
        if args.blocks:
            run.block = args.blocks[i]
        elif run.block is None and default_blocks is not None:
            run.block = default_blocks[i]  # the paper's order, as the inputs were given
        if run.dataset is None and run.config_dataset is not None:
            parser.error(
                f"{run.source}: dataset '{run.config_dataset}' of its config.yaml is not a paper "
                f"dataset (one of {', '.join(CONFIG_DATASETS)}); pass --dataset to compare anyway"
            )
        if run.dataset is None:
            parser.error(f"{run.source}: no config.yaml beside it names the dataset; pass --dataset")
        if run.block is None:
            parser.error(
                f"{run.source}: no config.yaml beside it names the block; pass --blocks "
                f"(one per input, of {', '.join(BLOCK_NAMES)})"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="run folders or metrics JSONs")
    parser.add_argument("--dataset", choices=DATASET_CHOICES, help="dataset of every input")
    parser.add_argument("--blocks", nargs="+", help="block of each input, in the same order")
    parser.add_argument("--out", help="also write the tables (Markdown) to this file")
    parser.add_argument("--json", help="write the summary rows as JSON to this file")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _split_blocks(parser, args)
    if not args.runs:
        parser.error("give at least one run folder or metrics JSON")
    try:
        check_table_outputs(args.runs, args.out, args.json)  # before anything is read
        runs = [read_run(path) for path in args.runs]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _label_runs(parser, args, runs)
    for run in runs:
        if run.not_paper:
            print(f"warning: {run.source}: {run.not_paper}; its comparison to the paper's numbers "
                  "is not meaningful", file=sys.stderr)
    runs = sort_runs(runs)
    text = render(runs)
    print(text)
    try:
        write_tables(args.out, args.json, text, summary_rows(runs))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
