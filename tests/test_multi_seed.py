"""tools/multi_seed.py: train.py per seed (subprocesses), mean ± std of the mAP per tIoU."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_infer import tiny_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return tiny_run(tmp_path_factory)


def test_two_seeds_mean_and_std(run, tmp_path):
    summary_file = tmp_path / "summary.json"
    cmd = [
        sys.executable,
        "tools/multi_seed.py",
        str(run["config"]),
        "--seeds",
        "2",
        "--first-seed",
        "7",
        "--device",
        "cpu",
        "--json",
        str(summary_file),
        "--opts",
        "opt.epochs=1",
        "opt.warmup_epochs=0",
        f"output_folder={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    assert summary["seeds"] == [7, 8] and summary["tiou"] == [0.3, 0.5, 0.7]
    for seed in (7, 8):
        folder = Path(summary["runs"][str(seed)]["run_folder"])
        assert folder == tmp_path / f"tiny_multiseed_seed{seed}"
        assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
        assert (
            json.loads((folder / "metrics.json").read_text())["mAP"]
            == summary["runs"][str(seed)]["mAP"]
        )
    per_seed = [summary["runs"][s]["mAP"] for s in ("7", "8")]
    for i in range(3):
        values = [m[i] for m in per_seed]
        assert summary["mAP_mean"][i] == pytest.approx(statistics.mean(values))
        assert summary["mAP_std"][i] == pytest.approx(statistics.stdev(values))
    mean, std = 100 * summary["mAP_mean"][1], 100 * summary["mAP_std"][1]
    assert (
        f"0.50: {mean:.2f} ± {std:.2f}" in proc.stdout and "mean ± std over 2 seeds" in proc.stdout
    )
    assert proc.stdout.splitlines()[1].startswith("7 ") and "seed 8: done" in proc.stderr


def test_failed_seeds_are_reported_and_exit_1(run, tmp_path, monkeypatch, capsys):
    """train.py is not run here: a stand-in fails seed 3 and succeeds for seed 4."""
    from libs.commands import multi_seed

    folder = tmp_path / "tiny_multiseed_seed4"
    folder.mkdir()
    (folder / "metrics.json").write_text(
        json.dumps({"tiou": [0.5], "mAP": [0.25], "average_mAP": 0.25})
    )

    def fake_run(cmd, **kwargs):
        seed = int(cmd[-3].split("=")[1]) if cmd[-2] == "--device" else int(cmd[-1].split("=")[1])
        ok = seed == 4
        return subprocess.CompletedProcess(
            cmd, 0 if ok else 2, stdout=f"run folder: {folder}\n" if ok else ""
        )

    monkeypatch.setattr(multi_seed.subprocess, "run", fake_run)
    args = [str(run["config"]), "--seed-list", "3", "4", "--opts", f"output_folder={tmp_path}"]
    assert multi_seed.main(args) == 1  # stops at seed 3
    out, err = capsys.readouterr()
    assert "seed 3: train.py failed with exit status 2" in err and "seed 4" not in err and out == ""
    assert multi_seed.main([*args, "--keep-going"]) == 1  # seed 4 is still summarised
    out, err = capsys.readouterr()
    assert "mean ± std over 1 seeds: 0.50: 25.00 ± 0.00" in out and "error: seed 3" in err


def test_summary_helpers():
    from libs.commands.multi_seed import mean_std, summarize

    assert mean_std([0.5]) == (0.5, 0.0)
    runs = {
        1: {"tiou": [0.5], "mAP": [0.4], "average_mAP": 0.4},
        2: {"tiou": [0.5], "mAP": [0.6], "average_mAP": 0.6},
    }
    s = summarize(runs)
    assert s["mAP_mean"] == [pytest.approx(0.5)] and s["mAP_std"] == [pytest.approx(0.1414213562)]
    runs[2]["tiou"] = [0.7]
    with pytest.raises(ValueError, match="tIoU"):
        summarize(runs)
