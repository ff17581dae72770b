"""The demo's record of its last run, and the README text made from it.

`tools/demo.py` writes `<out>/demo_last_run.json` as it goes (one entry per block, written when
the block ends). `tools/demo.py --update-readme` (or `python tools/demo_record.py` on a record
already written) copies it to `docs/demo_last_run.json` and rewrites the README between
`<!-- demo:begin -->` and `<!-- demo:end -->` from it: the machine, the timings and the mAP
table. `tests/test_demo_docs.py` fails when the README and the committed record disagree.

Record schema (`SCHEMA`): machine {cpu, cores, torch, python}, started, finished, load_average
[at start, at end] (1-minute), budget_seconds, quick, order (blocks asked for), main_block,
features_seconds (null: the features were already there), total_seconds, blocks {block:
{tiou, mAP, average_mAP (fractions), train_eval_seconds, resumed, run_folder} or {skipped}}.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from libs.core.safe_io import read_json  # noqa: E402

SCHEMA = 1
README = os.path.join(REPO, "README.md")
DOCS_RECORD = os.path.join(REPO, "docs", "demo_last_run.json")
BEGIN, END = "<!-- demo:begin", "<!-- demo:end -->"
REFRESH = "make demo-docs"  # = .venv/bin/python tools/demo.py --fresh --budget 900 --update-readme
DEFAULT_BUDGET = 600.0  # tools/demo.py --budget: seconds of training + evaluation for all blocks


PENDING = (f"No demo run is recorded yet (`docs/demo_last_run.json` is missing): `{REFRESH}` "
           "runs the demo and writes its machine, timings and mAP table here.")


class RecordError(ValueError):
    """A record that cannot go into the README (quick run, no finished block, bad markers)."""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which cgroup cpusets set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict:
    """What the timings were measured on (torch's version read without importing it)."""
    import importlib.metadata

    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {"cpu": cpu_model(), "cores": usable_cores(), "torch": torch_version,
            "python": platform.python_version()}


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def side_by_side(record: dict) -> List[str]:
    """The demo's final table (what tools/demo.py prints), one line per block."""
    done = {b: m for b, m in record["blocks"].items() if "mAP" in m}
    if not done:
        return []
    tious = next(iter(done.values()))["tiou"]
    lines = ["[demo] mAP (%) by block, synthetic THUMOS-14 features",
             f"{'block':9s}" + "".join(f"{'@' + format(t, '.1f'):>8s}" for t in tious)
             + f"{'avg':>8s}{'time':>8s}"]
    for block in record["order"]:
        m = record["blocks"].get(block, {"skipped": "not run"})
        if "mAP" in m:
            cells = "".join(f"{100 * v:8.2f}" for v in m["mAP"])
            seconds = m.get("train_eval_seconds")  # none: trained by an earlier demo run
            lines.append(f"{block:9s}{cells}{100 * m['average_mAP']:8.2f}"
                         + (f"{seconds:7.0f}s" if seconds is not None else f"{'-':>8s}"))
        else:
            lines.append(f"{block:9s}skipped: {m['skipped']}")
    return lines


def final_line(record: dict, out: str = "demo_output") -> str:
    main = record["blocks"][record["main_block"]]
    at05 = main["mAP"][main["tiou"].index(0.5)]
    return (f"[demo] {record['main_block']} mAP@0.5 = {100 * at05:.2f}%  "
            f"(written to {out}/metrics.json)")


def _timings(record: dict) -> str:
    """One sentence: machine, load, and every measured duration of the record."""
    m, load = record["machine"], record["load_average"]
    feats = record["features_seconds"]
    parts = [f"synthetic features {feats:.0f} s" if feats is not None
             else "synthetic features already there"]
    for block in record["order"]:
        b = record["blocks"].get(block, {})
        if "train_eval_seconds" in b:
            parts.append(f"{block} {b['train_eval_seconds']:.0f} s"
                         + (" (resumed: this part only)" if b.get("resumed") else "")
                         + (" (trained by an earlier run)" if b.get("reused") else ""))
    loads = " and ".join("n/a" if x is None else f"{x:.2f}" for x in load)
    return (f"Last recorded run ({record['finished'][:10]}, `docs/demo_last_run.json`): "
            f"{record['total_seconds'] / 60:.1f} min in all on {m['cpu']}, {m['cores']} cores "
            f"(1-minute load average {loads} at start and end), torch {m['torch']}: "
            + ", ".join(parts) + f"; time budget {record['budget_seconds']:.0f} s.")


def would_overrun(spent: List[float], elapsed: float, budget: float) -> bool:
    """tools/demo.py's rule: skip the next block when the slowest one so far would overrun."""
    return bool(spent) and elapsed + max(spent) > budget


def default_budget_blocks(record: dict, budget: float = DEFAULT_BUDGET) -> List[str]:
    """The blocks a plain `make demo` (default budget) would train, judged from the record's times."""
    trained, spent, elapsed = [], [], 0.0
    for block in record["order"]:
        seconds = record["blocks"].get(block, {}).get("train_eval_seconds")
        if seconds is None or would_overrun(spent, elapsed, budget):
            break
        trained.append(block)
        spent.append(seconds)
        elapsed += seconds
    return trained


def _default_budget_sentence(record: dict) -> str:
    trained = default_budget_blocks(record)
    skipped = [b for b in record["order"] if b not in trained]
    if not skipped:
        return (f"With the default budget ({DEFAULT_BUDGET:.0f} s) `make demo` on this machine trains "
                f"every block (judged from these timings).")
    return (f"With the default budget ({DEFAULT_BUDGET:.0f} s) `make demo` on this machine "
            f"trains {', '.join(trained) or 'the first block'} and skips {', '.join(skipped)} "
            f"(judged from these timings); `python tools/demo.py --budget 900` trains every block.")


def render(record: dict) -> str:
    """The README text between the demo markers (without the markers)."""
    check_record(record)
    return "\n".join([_timings(record), "```", *side_by_side(record), "",
                      final_line(record), "```",
                      _default_budget_sentence(record),
                      f"Refresh these numbers with `{REFRESH}` (about the time above)."])


def check_record(record: dict) -> None:
    if record.get("schema") != SCHEMA:
        raise RecordError(f"demo record: schema {record.get('schema')!r}, expected {SCHEMA}")
    if record.get("quick"):
        raise RecordError("demo record: a --quick run (1 epoch) is not the demo's result; "
                          "run the demo without --quick")
    main = record["blocks"].get(record.get("main_block"), {})
    if "mAP" not in main:
        raise RecordError(f"demo record: its main block {record.get('main_block')!r} has no "
                          "result (interrupted?); run the demo to the end first")


def replace_region(text: str, body: str, where: str = "README.md") -> str:
    """`text` with the part between the demo markers replaced by `body`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise RecordError(f"{where}: needs exactly one '{BEGIN} ... -->' and one '{END}' line, "
                          "in that order, around the demo's numbers")
    head_end = text.index("\n", start) + 1  # keep the begin marker's line (its comment) as is
    return text[:head_end] + body + "\n" + text[end:]


def expected_region(docs_record: str = DOCS_RECORD) -> str:
    """What the README must hold between the markers: the committed record, rendered."""
    if not os.path.isfile(docs_record):
        return PENDING
    return render(read_json(docs_record, "demo record"))


def region(text: str) -> str:
    """The README's current text between the demo markers."""
    start = text.index("\n", text.index(BEGIN)) + 1
    return text[start:text.index(END)].rstrip("\n")


def update_readme(record_path: str, readme: str = README, docs_record: str = DOCS_RECORD) -> None:
    """Copy the record to docs/ and rewrite the README's demo region from it."""
    record = read_json(record_path, "demo record")
    body = render(record)
    with open(readme) as f:
        text = f.read()
    new = replace_region(text, body, readme)
    if os.path.abspath(record_path) != os.path.abspath(docs_record):
        shutil.copyfile(record_path, docs_record)
    with open(readme, "w") as f:
        f.write(new)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite the README's demo numbers from a record.")
    parser.add_argument("record", nargs="?", default=os.path.join(REPO, "demo_output",
                                                                  "demo_last_run.json"),
                        help="the demo's record (default demo_output/demo_last_run.json)")
    args = parser.parse_args(argv)
    try:
        update_readme(args.record)
    except (RecordError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[demo] README.md and docs/demo_last_run.json updated from {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
