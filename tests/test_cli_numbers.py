"""The shared argparse number types of libs/cli.py: a bad value is one `error:` line, exit 2."""
from __future__ import annotations

import argparse

import pytest

from libs.cli import positive_int, seed_arg, unit_float


def _parse(kind, text: str, capsys):
    parser = argparse.ArgumentParser(prog="tool.py")
    parser.add_argument("--x", type=kind)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--x", text])
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("kind, text, what", [
    (positive_int, "0", "must be a whole number >= 1, got '0'"),
    (positive_int, "2.5", "must be a whole number >= 1, got '2.5'"),
    (positive_int, "9" * 5000, "must be a whole number >= 1, got '99999999999"),
    (unit_float, "nan", "must be a number in [0, 1], got 'nan'"),
    (unit_float, "1.5", "must be a number in [0, 1], got '1.5'"),
    (seed_arg, "-1", "a seed must be a whole number in 0 .. 2**63 - 1, got '-1'"),
    (seed_arg, "99999999999999999999999999", "a seed must be a whole number in 0 .. 2**63 - 1"),
])
def test_bad_numbers_are_one_error_line(kind, text, what, capsys):
    err = _parse(kind, text, capsys)
    assert what in err and err.count("error: ") == 1 and len(err) < 500, err


def test_good_numbers_pass():
    assert positive_int("3") == 3 and unit_float("0") == 0.0 and unit_float("1") == 1.0
    assert seed_arg("0") == 0 and seed_arg(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize("command, argv, what", [
    ("diagnose", ["r.json", "--gt", "g.json", "--out", "d", "--limit-factor", "0"], ">= 1"),
    ("diagnose", ["r.json", "--gt", "g.json", "--out", "d", "--min-tiou", "-0.1"], "[0, 1]"),
    ("infer", ["c.yaml", "k.pth", "f.npy", "--plot-top-k", "-3"], ">= 1"),
    ("make_synthetic", ["--gt", "g.json", "--out", "o", "--feat-stride", "nan"], "> 0"),
    ("make_synthetic", ["--gt", "g.json", "--out", "o", "--input-dim", "0"], ">= 1"),
    ("make_synthetic", ["--gt", "g.json", "--out", "o", "--seed", "-5"], "a seed must be"),
    ("multi_seed", ["c.yaml", "--seeds", "0"], ">= 1"),
    ("multi_seed", ["c.yaml", "--seed-list", "1", "-2"], "a seed must be"),
    ("prepare_features", ["verify", "f", "--gt", "g.json", "--default-fps", "inf"], "> 0"),
    ("prepare_features", ["verify", "f", "--gt", "g.json", "--examples", "0"], ">= 1"),
    ("visualize", ["timeline", "r.json", "--gt", "g.json", "--out", "o", "--top-k", "0"], ">= 1"),
    ("visualize", ["timeline", "r.json", "--gt", "g.json", "--out", "o", "--min-score", "2"],
     "[0, 1]"),
])
def test_every_commands_number_flags_are_checked(command, argv, what, capsys):
    """Counts, scores and frame rates of every tool: a bad value stops at parsing, exit 2."""
    import importlib

    parser = importlib.import_module(f"libs.commands.{command}").build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and what in err and err.count("error: ") == 1, err
