"""One CLI convention (docs/cli.md): every command's parser is checked against the table there."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from libs.cli import tiou_threshold
from libs.core.config import DatasetCfg

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
COMMANDS = sorted(p.stem for p in (ROOT / "libs" / "commands").glob("*.py") if p.stem != "__init__")
COLUMNS = ["command", "positional", "gt", "out", "json", "tiou", "per_class", "old"]
# flags that were renamed: they may exist only as hidden deprecated aliases
OLD_NAMES = {"--results", "--metrics", "--output", "--out-dir", "--tious", "--prefix", "--suffix",
             "--ext", "--fps", "--fps-default", "--dim", "--subsets", "--subset"}
# the smallest valid command line of each row, for parsing old vs new flags
BASE_ARGV = {
    "train": ["c.yaml"],
    "eval": ["c.yaml", "ck.pth"],
    "infer": ["c.yaml", "ck.pth", "f.pt"],
    "eval_results": ["r.json", "--gt", "g.json"],
    "rescore": ["raw.pt", "c.yaml"],
    "diagnose": ["r.json", "--gt", "g.json", "--out", "d"],
    "visualize timeline": ["timeline", "r.json"],
    "visualize pr": ["pr", "r.json"],
    "make_synthetic": ["--gt", "g.json", "--out", "o"],
    "prepare_features join": ["join", "p.tar", "--out", "o"],
    "prepare_features verify": ["verify", "feats", "--gt", "g.json"],
    "paper_table": ["run"],
    "multi_seed": ["c.yaml"],
    "check_env": [],
}


def table_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) and re.fullmatch(r"`[a-z_]+( [a-z]+)?`", cells[0]):
            rows[cells[0].strip("`")] = dict(zip(COLUMNS, cells))
    return rows


ROWS = table_rows()


def parser_of(row: str) -> argparse.ArgumentParser:
    """The parser of a table row: `name` or `name subcommand`."""
    name, *sub = row.split()
    parser = importlib.import_module(f"libs.commands.{name}").build_parser()
    if sub:
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = subs.choices[sub[0]]
    return parser


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)


def visible_positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest.upper() for a in parser._actions if not a.option_strings
            and a.help is not argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]


def test_the_table_lists_every_command():
    listed = {row.split()[0] for row in ROWS}
    assert listed == set(COMMANDS), f"docs/cli.md misses {set(COMMANDS) - listed}"
    assert set(ROWS) == set(BASE_ARGV)


@pytest.mark.parametrize("row", sorted(ROWS))
def test_parser_matches_the_table(row):
    cells, parser = ROWS[row], parser_of(row)
    opts = {f: a for f, a in options(parser).items() if a.help is not argparse.SUPPRESS}
    want = [] if cells["positional"] == "—" else cells["positional"].split()
    assert visible_positionals(parser) == want
    for column, flag in (("out", "--out"), ("json", "--json"), ("per_class", "--per-class")):
        assert (flag in opts) == cells[column].startswith(f"`{flag}"), (row, flag)
    assert ("--tiou" in opts) == (cells["tiou"] == "`--tiou`"), row
    assert ("--gt" in opts) == ("`--gt`" in cells["gt"]), row
    if "config" in cells["gt"]:
        assert "--config" in opts or "CONFIG" in want, row


@pytest.mark.parametrize("row", sorted(ROWS))
def test_shared_flag_rules(row):
    parser = parser_of(row)
    opts = options(parser)
    if "--tiou" in opts:
        assert opts["--tiou"].nargs == "+" and opts["--tiou"].type is tiou_threshold
    if "--json" in opts:
        assert opts["--json"].nargs in (None, "?"), "--json takes the output file"
    for flag in OLD_NAMES & set(opts):  # renamed flags are hidden aliases only
        assert opts[flag].help is argparse.SUPPRESS, (row, flag)
    keys = {f.name for f in dataclasses.fields(DatasetCfg)}
    for flag in ("--file-prefix", "--feature-type", "--file-ext", "--default-fps", "--input-dim"):
        assert flag[2:].replace("-", "_") in keys
    for flag, action in opts.items():
        if flag.startswith("--") and action.help is not argparse.SUPPRESS:
            assert "_" not in flag, f"{row}: {flag} (flags use dashes)"


def deprecated_pairs() -> list[tuple[str, str, str]]:
    return [(row, old, new) for row, cells in sorted(ROWS.items())
            for old, new in re.findall(r"`(--[\w-]+)`→`(--[\w-]+)`", cells["old"])]


def sample(action: argparse.Action) -> list[str]:
    if action.nargs == 0:
        return []
    value = action.choices[0] if action.choices else "1"
    return [value, "0.5"] if action.nargs in ("+", "*") else [value]


def without(argv: list[str], flag: str) -> list[str]:
    if flag not in argv:
        return list(argv)
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


@pytest.mark.parametrize("row, old, new", deprecated_pairs())
def test_old_flags_warn_and_do_the_same(row, old, new, capsys):
    name = row.split()[0]
    module = importlib.import_module(f"libs.commands.{name}")
    opts = options(parser_of(row))
    assert old in opts and new in opts
    value = sample(opts[new])
    base = without(BASE_ARGV[row], new)
    as_new = module.parse_args(base + [new, *value])
    assert "deprecated" not in capsys.readouterr().err
    as_old = module.parse_args(base + [old, *value])
    err = capsys.readouterr().err
    assert f"warning: {old} is deprecated and will be removed in the next release; use {new}" in err
    assert vars(as_old) == vars(as_new)


def test_every_alias_of_the_helper_is_in_the_table():
    """A deprecated alias added in code but missing from docs/cli.md fails here."""
    documented = {(row, old) for row, old, _ in deprecated_pairs()}
    for row in ROWS:
        for flag, action in options(parser_of(row)).items():
            if type(action).__name__ == "DeprecatedAlias":
                assert (row, flag) in documented, f"{row}: {flag} is not in docs/cli.md"


@pytest.mark.parametrize("row", ["eval_results", "diagnose"])
def test_old_positional_gt_form(row, capsys):
    module = importlib.import_module(f"libs.commands.{row}")
    extra = ["--out", "d"] if row == "diagnose" else []
    old = module.parse_args(["g.json", "r.json", *extra])
    assert "use RESULTS --gt GT_JSON" in capsys.readouterr().err
    assert vars(old) == vars(module.parse_args(["r.json", "--gt", "g.json", *extra]))
    with pytest.raises(SystemExit):
        module.parse_args(["r.json", *extra])
    assert "give RESULTS --gt GT_JSON" in capsys.readouterr().err
