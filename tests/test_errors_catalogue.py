"""docs/errors.md is a catalogue of tested cases: at least 100 rows, and every row is a test.

A row is a line `| case | message |` of one of its tables (header and separator lines aside). A
row is covered when its message is what some test under tests/ expects: the backticked text of
the message column is cut at placeholders (`<tmp>`, `<out>`, `...`, line breaks), and some run of
at least `MIN_RUN` characters of one piece (the whole piece, when shorter) must appear verbatim in
a test file. Rows whose message is prose ("same message, at the line of the anchor") are matched
by their case column instead. A row whose text no test checks fails here, with its line number.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "docs" / "errors.md"
MIN_CASES = 100
MIN_RUN = 16  # characters of a message that must appear verbatim in a test
# where a message's literal text stops: placeholders, elisions, markdown line breaks
_CUT = re.compile(r"<[a-z_ ]+>|\.\.\.|…|<br>|\(\.\.\.\)")


def catalogue_rows(text: str) -> list[tuple[int, str, str]]:
    """(line number, case, message) of every case row of the catalogue's tables."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 2 or cells == ["case", "message"]:
            continue
        rows.append((number, cells[0], cells[1]))
    return rows


def literal_pieces(message: str, case: str) -> list[str]:
    """The literal text a test must contain: backticked spans cut at placeholders; the case
    column (without markdown) when the message has no backticked text."""
    spans = re.findall(r"`([^`]+)`", message)
    pieces = [p.strip(" .:;,'\"") for span in spans for p in _CUT.split(span)]
    pieces = [p for p in pieces if len(p) >= 6]
    if not pieces:
        pieces = [re.sub(r"[`*]", "", case).strip()]
    return pieces


def covered(pieces: list[str], corpus: str) -> bool:
    """True when a run of MIN_RUN characters of some piece (or a short piece whole) is in corpus."""
    for piece in pieces:
        run = min(MIN_RUN, len(piece))
        if any(piece[i : i + run] in corpus for i in range(len(piece) - run + 1)):
            return True
    return False


def _test_corpus() -> str:
    return "\n".join(p.read_text(encoding="utf8") for p in sorted((REPO / "tests").glob("*.py"))
                     if p.name != Path(__file__).name)


def test_catalogue_has_at_least_100_cases():
    rows = catalogue_rows(CATALOGUE.read_text(encoding="utf8"))
    assert len(rows) >= MIN_CASES, f"docs/errors.md lists {len(rows)} cases, fewer than {MIN_CASES}"
    assert len({(case, msg) for _, case, msg in rows}) == len(rows), "a row is listed twice"


def test_every_catalogue_row_is_checked_by_a_test():
    corpus = _test_corpus()
    rows = catalogue_rows(CATALOGUE.read_text(encoding="utf8"))
    missing = [f"docs/errors.md:{n}: {case} | {msg[:100]}" for n, case, msg in rows
               if not covered(literal_pieces(msg, case), corpus)]
    assert not missing, "rows whose message no test checks:\n" + "\n".join(missing)


def test_the_coverage_rule_can_fail():
    """The rule rejects a row nobody tests, and accepts one quoted by a fragment of a test."""
    corpus = 'fragments = ("anno.json", "label_id values must lie in [0, 2)")'
    good = literal_pieces("`<tmp>/anno.json: label_id values must lie in [0, 2), got {'Run': 7}`", "x")
    bad = literal_pieces("`<tmp>/anno.json: the moon is made of cheese, says the loader`", "x")
    assert covered(good, corpus) and not covered(bad, corpus)
    assert literal_pieces("same message, at the line of the anchor", "recursive YAML alias") == [
        "recursive YAML alias"
    ]
    rows = catalogue_rows("| case | message |\n|---|---|\n| a `b` | `c \\| d` |\n| x |\n")
    assert rows == [(3, "a `b`", "`c \\| d`")]
