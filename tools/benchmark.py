"""Benchmarks that time the current code against a baseline measured in the same run.

    python tools/benchmark.py scan     # C++ selective scan vs the PyTorch reference loop
    python tools/benchmark.py scan --device cuda  # GPU: Triton vs mamba-ssm vs PyTorch, DBM step
    python tools/benchmark.py block    # window attention vs ViM vs DBM block, THUMOS size
    python tools/benchmark.py nms      # C++ NMS vs the PyTorch twin
    python tools/benchmark.py eval     # vectorised mAP vs a per-prediction loop
    python tools/benchmark.py step     # full train step + inference of each THUMOS config, GFLOP/s vs GEMM
    python tools/benchmark.py diagnose # DETAD diagnosis, 40k THUMOS predictions, vs DETAD itself
    python tools/benchmark.py threads  # training time quiet vs next to a busy process, thread setting vs none
    python tools/benchmark.py all      # every one of the above
    ... [--json OUT.json]              # also write the numbers as JSON

Each subcommand lives in tools/bench/<name>_bench.py and exposes add_args(parser) and
run(args) -> dict; it prints its own table with ratios against its baseline.
"""

import argparse
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SUITES = ("scan", "block", "nms", "eval", "step", "diagnose", "threads")


def _module(name: str):
    return importlib.import_module(f"tools.bench.{name}_bench")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="suite", required=True)
    for name in SUITES:
        p = sub.add_parser(name)
        _module(name).add_args(p)
        p.add_argument("--json", default=None, help="write the results as JSON here")
    p_all = sub.add_parser("all")
    p_all.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.suite == "all":
        results = {}
        for name in SUITES:
            sub_args = sub.choices[name].parse_args([])
            print(f"\n== {name} ==")
            results[name] = _module(name).run(sub_args)
    else:
        results = {args.suite: _module(args.suite).run(args)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
