"""Print what this machine will run: torch / CUDA, libs._C, mamba-ssm / causal-conv1d, backends.

    python tools/check_env.py          # a table, plus the install command for anything missing
    python tools/check_env.py --json   # the same as JSON
"""
import argparse
import importlib.util
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import libs.ops  # noqa: E402

FIXES = {
    "libs._C": "pip install -e . --no-build-isolation   (builds the C++ NMS and selective scan)",
    "mamba_ssm": "MAMBA_FORCE_BUILD=TRUE MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation   (GPU only; see INSTALL.md)",
    "causal_conv1d": "CAUSAL_CONV1D_FORCE_BUILD=TRUE pip install causal-conv1d --no-build-isolation   (GPU only; see INSTALL.md)",
}


def optional_packages() -> dict:
    """Whether each optional GPU package is installed (not imported: on CPU it would fail)."""
    return {name: importlib.util.find_spec(name) is not None for name in ("mamba_ssm", "causal_conv1d")}


def missing_fixes(report: dict, packages: dict) -> list:
    fixes = []
    if not report["libs._C built"]:
        fixes.append(FIXES["libs._C"])
    if report["cuda_available"]:
        fixes += [FIXES[name] for name, present in packages.items() if not present]
    return fixes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = libs.ops.report()
    report["optional packages installed"] = optional_packages()
    report["to install"] = missing_fixes(report, report["optional packages installed"])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        if key == "to install":
            continue
        print(f"{key:28s} {value}")
    for fix in report["to install"]:
        print(f"missing -> {fix}")
    if not report["to install"]:
        print("everything this machine can use is installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
