"""eval.py --save-raw + tools/rescore.py: post-processing and evaluation without the model.

The contract: for the same config and overrides, rescoring the raw file gives exactly eval.py's
numbers and detections (eval.py with and without --save-raw agree too).
"""

import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_infer import restored_process_state, tiny_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return tiny_run(tmp_path_factory)


@pytest.fixture
def eval_main(monkeypatch):
    """eval.main, run in-process (no interpreter start-up), its process-wide changes undone."""
    with restored_process_state(monkeypatch):
        yield importlib.import_module("eval").main


def _eval(eval_main, run, out: Path, name: str, *extra: str) -> tuple[dict, dict]:
    args = [
        str(run["config"]),
        str(run["ckpt"]),
        "--device",
        "cpu",
        "--out",
        str(out / f"{name}_results.json"),
        "--json",
        str(out / f"{name}_metrics.json"),
        *extra,
    ]
    assert eval_main(args) == 0
    return (
        json.loads((out / f"{name}_metrics.json").read_text()),
        json.loads((out / f"{name}_results.json").read_text()),
    )


def _rescore(raw: Path, run, out: Path, name: str, *opts: str) -> tuple[dict, dict]:
    from libs.commands import rescore

    args = [
        str(raw),
        str(run["config"]),
        "--json",
        str(out / f"{name}_metrics.json"),
        "--out",
        str(out / f"{name}_results.json"),
    ]
    assert rescore.main(args + (["--opts", *opts] if opts else [])) == 0
    return (
        json.loads((out / f"{name}_metrics.json").read_text()),
        json.loads((out / f"{name}_results.json").read_text()),
    )


def test_rescore_reproduces_eval_exactly(run, eval_main, tmp_path):
    raw = tmp_path / "raw" / "raw.pt"
    saved = _eval(eval_main, run, tmp_path, "saved", "--save-raw", str(raw))
    plain = _eval(eval_main, run, tmp_path, "plain")
    assert saved == plain  # --save-raw changes nothing in eval.py's output
    assert plain[0]["mAP"][0] > 0.5  # a trained model: the equality below is not 0 == 0

    assert _rescore(raw, run, tmp_path, "rescored") == plain

    opts = ("test.nms_sigma=0.9", "test.max_seg_num=7", "test.min_score=0.05")
    tuned_eval = _eval(eval_main, run, tmp_path, "tuned_eval", "--opts", *opts)
    tuned = _rescore(raw, run, tmp_path, "tuned", *opts)
    assert tuned == tuned_eval
    assert tuned[1] != plain[1]  # the knobs did change the detections
    assert all(len(v) <= 7 for v in tuned[1]["results"].values())


def test_raw_file_is_plain_and_weights_only_loadable(run, eval_main, tmp_path):
    raw = tmp_path / "raw.pt"
    _eval(eval_main, run, tmp_path, "e", "--save-raw", str(raw))
    data = torch.load(raw, weights_only=True)
    assert data["format"] == "raw_predictions" and data["version"] == 1
    assert data["id_to_name"] == {0: "Jump", 1: "Run"}
    assert [v["video_id"] for v in data["videos"]] == ["vid5", "vid6", "vid7"]
    video = data["videos"][0]
    assert video["segments"].shape[1] == 2 and video["segments"].dtype == torch.float32
    assert video["labels"].dtype == torch.int64 and len(video["scores"]) == len(video["labels"])
    assert (video["fps"], video["feat_stride"], video["feat_num_frames"], video["duration"]) == (
        30.0,
        8.0,
        16.0,
        30.0,
    )
    assert data["config"]["test"]["pre_nms_topk"] == 5000


def test_sweep_model_side_warning_and_errors(run, eval_main, tmp_path, capsys, caplog):
    from libs.commands import rescore

    raw = tmp_path / "raw.pt"
    metrics, _ = _eval(eval_main, run, tmp_path, "e", "--save-raw", str(raw))
    capsys.readouterr()
    sweep_json = tmp_path / "sweep.json"
    assert (
        rescore.main(
            [
                str(raw),
                str(run["config"]),
                "--sweep",
                "test.nms_sigma=0.5,0.9",
                "--sweep",
                "test.nms_method=soft",
                "--json",
                str(sweep_json),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test.nms_sigma=0.5 test.nms_method=soft" in out and "best average mAP" in out
    rows = json.loads(sweep_json.read_text())["sweep"]
    assert [r["setting"] for r in rows] == [
        "test.nms_sigma=0.5 test.nms_method=soft",
        "test.nms_sigma=0.9 test.nms_method=soft",
    ]
    assert rows[0]["average_mAP"] == metrics["average_mAP"]  # 0.5 / soft is the config's setting

    with caplog.at_level(logging.WARNING):
        assert rescore.main([str(raw), str(run["config"]), "--opts", "test.pre_nms_topk=10"]) == 0
    assert "test.pre_nms_topk=10" in caplog.text and "NOT re-applied" in caplog.text

    not_raw = tmp_path / "weights.pt"
    torch.save({"model": {}}, not_raw)
    assert rescore.main([str(not_raw), str(run["config"])]) == 2
    assert "not a raw-predictions file" in capsys.readouterr().err
    assert rescore.main([str(tmp_path / "missing.pt"), str(run["config"])]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert rescore.main([str(raw), str(run["config"]), "--sweep", "test.nms_sigma"]) == 2
    capsys.readouterr()
    assert rescore.main([str(raw), str(run["config"]), "--sweep", "test.nms_sigma=0.5,-1"]) == 2
    err = capsys.readouterr().err
    assert "--sweep test.nms_sigma=-1" in err and "--opts test.nms_sigma" not in err, err


def test_rescore_cli(run, eval_main, tmp_path):
    raw = tmp_path / "raw.pt"
    metrics, _ = _eval(eval_main, run, tmp_path, "e", "--save-raw", str(raw))
    proc = subprocess.run(
        [sys.executable, "tools/rescore.py", str(raw), str(run["config"]), "--per-class"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{100 * metrics['average_mAP']:.2f}" in proc.stdout and "Jump" in proc.stdout


def test_sweep_collapses_settings_without_effect(run, eval_main, tmp_path, capsys):
    """nms_sigma does nothing under hard NMS: its values share one row (and the JSON says so)."""
    from libs.commands import rescore

    raw = tmp_path / "raw.pt"
    _eval(eval_main, run, tmp_path, "e", "--save-raw", str(raw))
    capsys.readouterr()
    sweep_json = tmp_path / "sweep.json"
    argv = [str(raw), str(run["config"]), "--sweep", "test.nms_method=hard,soft",
            "--sweep", "test.nms_sigma=0.3,0.9", "--json", str(sweep_json)]
    assert rescore.main(argv) == 0
    out = capsys.readouterr().out
    assert "test.nms_method=hard test.nms_sigma=0.3|0.9 " in out, out
    assert "test.nms_method=hard test.nms_sigma=0.3 " not in out
    assert "test.nms_method=soft test.nms_sigma=0.3 " in out  # soft: sigma matters
    assert "4 settings, 3 distinct results" in out
    rows = json.loads(sweep_json.read_text())["sweep"]
    assert len(rows) == 4 and rows[1]["same_as"] == rows[0]["setting"] and "same_as" not in rows[2]
    assert rows[1]["mAP"] == rows[0]["mAP"] and rows[2]["mAP"] != rows[3]["mAP"]


def test_merged_setting_only_for_a_full_grid():
    from libs.commands.rescore import merged_setting

    assert merged_setting(["a=1 b=x", "a=1 b=y"]) == "a=1 b=x|y"
    assert merged_setting(["a=1 b=x", "a=2 b=y"]) == "a=1 b=x / a=2 b=y"
    assert merged_setting(["a=1"]) == "a=1"


def test_old_results_flag_still_writes_detections(run, eval_main, tmp_path, capsys):
    from libs.commands import rescore

    raw = tmp_path / "raw.pt"
    _eval(eval_main, run, tmp_path, "e", "--save-raw", str(raw))
    capsys.readouterr()
    assert rescore.main([str(raw), str(run["config"]), "--results", str(tmp_path / "d.json")]) == 0
    assert "--results is deprecated" in capsys.readouterr().err and (tmp_path / "d.json").exists()


def test_tiou_flag_replaces_the_config_set_in_eval_and_rescore(run, eval_main, tmp_path, capsys):
    from libs.commands import rescore

    raw = tmp_path / "raw.pt"
    plain, _ = _eval(eval_main, run, tmp_path, "plain", "--save-raw", str(raw))
    assert len(plain["tiou"]) != 2
    picked, _ = _eval(eval_main, run, tmp_path, "picked", "--tiou", "0.5", "0.7")
    assert picked["tiou"] == [0.5, 0.7]
    at = {round(t, 2): m for t, m in zip(plain["tiou"], plain["mAP"])}
    assert picked["mAP"] == [at[0.5], at[0.7]]  # the same detections, scored at the given set
    rescored = tmp_path / "rescored.json"
    assert rescore.main([str(raw), str(run["config"]), "--tiou", "0.5", "0.7",
                         "--json", str(rescored)]) == 0
    assert json.loads(rescored.read_text()) == picked
    both = [str(raw), str(run["config"]), "--tiou", "0.5", "--opts", "dataset.tiou_thresholds=[0.3]"]
    assert rescore.main(both) == 2
    assert "--tiou or --opts dataset.tiou_thresholds" in capsys.readouterr().err
