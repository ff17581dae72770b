"""Evaluation output: EvalResult.to_json / format_table, and tools/eval_results.py end to end."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from libs.evaluation import DetectionMAP, format_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "tools/eval_results.py"


GT = {
    "database": {
        "a": {
            "subset": "Test",
            "duration": 60.0,
            "annotations": [
                {"label": "Jump", "segment": [0.0, 10.0], "label_id": 0},
                {"label": "Jump", "segment": [20.0, 30.0], "label_id": 0},
            ],
        },
        "b": {
            "subset": "Validation",
            "duration": 60.0,
            "annotations": [{"label": "Run", "segment": [0.0, 5.0], "label_id": 1}],
        },
    }
}
# ranks FP, TP, TP → AP 2/3 at every threshold; one label given as its integer id
RESULTS = {
    "version": "VERSION 1.3",
    "external_data": {},
    "results": {
        "a": [
            {"label": "Jump", "segment": [40.0, 50.0], "score": 0.9},
            {"label": "Jump", "segment": [0.0, 10.0], "score": 0.8},
            {"label": 0, "segment": [20.0, 30.0], "score": 0.7},
        ]
    },
}


def test_to_json_and_table():
    r = DetectionMAP(GT, "test", [0.3, 0.5, 0.7]).evaluate(RESULTS)
    assert r.to_json() == {"tiou": [0.3, 0.5, 0.7], "mAP": r.mAP, "average_mAP": r.average_mAP}
    table = format_table(r)
    assert "0.30" in table and "66.67" in table and "Jump" not in table
    assert "Jump" in format_table(r, per_class=True)
    assert r.summary()["mAP@0.50"] == r.mAP[1]


def run_cli(*args: str, launcher: bool = False) -> subprocess.CompletedProcess:
    """The CLI with these arguments: through tools/eval_results.py in a new interpreter
    (launcher=True), else its main() in this process (fast; same output)."""
    if launcher:
        return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    from libs.commands import eval_results

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = eval_results.main(list(map(str, args)))
        except SystemExit as exc:  # argparse errors
            status = exc.code
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@pytest.fixture
def files(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "res.json").write_text(json.dumps(RESULTS))
    return tmp_path


def test_cli_prints_table_and_writes_json(files):
    out = files / "out" / "map.json"
    out.parent.mkdir()
    proc = run_cli(
        files / "res.json",
        "--gt",
        files / "gt.json",
        "--split",
        "test",
        "--tiou",
        "0.3",
        "0.5",
        "--json",
        out,
        "--per-class",
        launcher=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "66.67" in proc.stdout and "Jump" in proc.stdout
    data = json.loads(out.read_text())
    assert data["tiou"] == [0.3, 0.5]
    assert data["mAP"] == pytest.approx([2 / 3, 2 / 3]) and data["average_mAP"] == pytest.approx(
        2 / 3
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.json"]  # no temp file left


def test_cli_default_thresholds_are_official(files):
    out = files / "map.json"
    proc = run_cli(files / "res.json", "--gt", files / "gt.json", "--split", "Test", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["tiou"] == pytest.approx([0.5 + 0.05 * i for i in range(10)])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda gt, res: gt.pop("database"), "'database'"),
        (lambda gt, res: res.pop("results"), "'results'"),
        (lambda gt, res: res["results"]["a"][0].update(segment=[1.0]), "video 'a'"),
        (lambda gt, res: res["results"]["a"][0].update(label="Dance"), "unknown label 'Dance'"),
    ],
)
def test_cli_bad_input_one_line_error(files, mutate, message):
    gt, res = json.loads((files / "gt.json").read_text()), json.loads(
        (files / "res.json").read_text()
    )
    mutate(gt, res)
    (files / "gt.json").write_text(json.dumps(gt))
    (files / "res.json").write_text(json.dumps(res))
    proc = run_cli(files / "res.json", "--gt", files / "gt.json", "--split", "test")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_missing_file_and_empty_split(files):
    proc = run_cli(files / "res.json", "--gt", files / "nope.json")
    assert proc.returncode == 2 and "nope.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(files / "res.json", "--gt", files / "gt.json", "--split", "training")
    assert proc.returncode == 2 and "'Test'" in proc.stderr and "'Validation'" in proc.stderr


def in_process(capsys, *args) -> tuple[int, str]:
    """eval_results.main in this process (no interpreter start-up): (status, stderr)."""
    from libs.commands import eval_results

    capsys.readouterr()
    try:
        status = eval_results.main(list(map(str, args)))
    except SystemExit as exc:  # argparse errors
        status = exc.code
    return status, capsys.readouterr().err


def test_cli_warns_about_videos_without_detections(files, capsys):
    gt = json.loads((files / "gt.json").read_text())
    for v in "cdefg":  # five more test videos, none of them in the results
        gt["database"][v] = dict(gt["database"]["a"])
    (files / "gt.json").write_text(json.dumps(gt))
    status, err = in_process(capsys, files / "res.json", "--gt", files / "gt.json", "--split", "test")
    assert status == 0, err
    assert "warning: 5 of the 6 videos of the split have no detections" in err
    assert "e.g. c, d, e" in err
    _, alone = in_process(capsys, files / "res.json", "--gt", files / "gt.json", "--split", "test",
                          "--exclude", *"cdefg")
    assert "no detections" not in alone, alone


def test_cli_old_positional_form_still_works(files, capsys):
    out_new, out_old = files / "new.json", files / "old.json"
    new = in_process(capsys, files / "res.json", "--gt", files / "gt.json", "--split", "test", "--json", out_new)
    old = in_process(capsys, files / "gt.json", files / "res.json", "--split", "test", "--json", out_old)
    assert new[0] == old[0] == 0, old[1]
    assert "deprecated" not in new[1]
    assert "the form GT_JSON RESULTS is deprecated" in old[1]
    assert "use RESULTS --gt GT_JSON" in old[1]
    assert json.loads(out_new.read_text()) == json.loads(out_old.read_text())
    both = in_process(capsys, files / "gt.json", files / "res.json", "--gt", files / "gt.json")
    assert both[0] == 2 and "one positional input" in both[1]
    none = in_process(capsys, files / "res.json")
    assert none[0] == 2 and "--gt GT_JSON" in none[1]
