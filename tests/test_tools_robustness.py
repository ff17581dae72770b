"""Hostile and mistaken inputs to tools/infer.py, tools/visualize.py, tools/paper_table.py,
tools/rescore.py's raw files and the run lock: each is one clear `error:` line (exit 2) or a
sane result, never a traceback, a hang or a destroyed input.

The infer cases reuse test_infer.py's tiny trained run (`tiny_run`); a copy of its checkpoint
that stores its config stands for a checkpoint train.py wrote.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_infer import tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """tiny_run's paths plus `stored`: its checkpoint with the config stored in it."""
    paths = dict(tiny_run(tmp_path_factory))
    stored = paths["root"] / "stored.pth"
    if not stored.is_file():
        state = torch.load(paths["ckpt"], weights_only=True)
        state["config"] = yaml.safe_load(paths["config"].read_text())
        torch.save(state, stored)
    paths["stored"] = stored
    paths["video"] = sorted(paths["feats"].glob("*.pt"))[0]
    return paths


def _infer(run, tmp_path, *extra, ckpt="ckpt"):
    from libs.commands import infer

    out = tmp_path / "dets.json"
    argv = [str(run["config"]), str(run[ckpt]), str(run["video"]), "--out", str(out), *extra]
    if "--default-fps" not in extra:
        argv += ["--default-fps", "30"]
    return infer.main(argv), out


def test_infer_out_equal_to_the_config_is_refused(run, tmp_path, capsys):
    before = run["config"].read_text()
    code, _ = _infer(run, tmp_path, "--out", str(run["config"]))
    assert code == 2
    assert "is also the input CONFIG" in capsys.readouterr().err
    assert run["config"].read_text() == before


def test_infer_plot_equal_to_an_input_is_refused(run, tmp_path, capsys):
    code, out = _infer(run, tmp_path, "--plot", str(run["config"]))
    assert code == 2
    assert "--plot" in capsys.readouterr().err and not out.exists()


def test_infer_stride_flags_may_not_change_a_stored_config(run, tmp_path, capsys):
    code, out = _infer(run, tmp_path, "--feat-stride", "4", ckpt="stored")
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "--feat-stride 4 conflicts with dataset.feat_stride 8 stored in the checkpoint" in err
    code, _ = _infer(run, tmp_path, "--num-frames", "32", ckpt="stored")
    assert code == 2 and "--num-frames 32 conflicts with dataset.num_frames 16" in capsys.readouterr().err
    code, out = _infer(run, tmp_path, "--feat-stride", "8", "--num-frames", "16", ckpt="stored")
    assert code == 0 and out.is_file()  # restating the stored values is fine


def test_infer_stride_flag_works_for_checkpoints_without_a_config(run, tmp_path):
    code, out = _infer(run, tmp_path, "--feat-stride", "4")  # a bare state dict: the flag counts
    assert code == 0
    info = next(iter(json.loads(out.read_text())["video_info"].values()))
    assert info["feat_stride"] == 4


@pytest.mark.parametrize(
    "flag,value,fragment",
    [
        ("--default-fps", "1e308", "must be at most 1000"),
        ("--feat-stride", "99999999999999999999", "must be at most 10000"),
        ("--num-frames", "99999999999999999", "must be at most 10000"),
        ("--default-fps", "nan", "must be a finite number > 0"),
    ],
)
def test_infer_extreme_numbers_are_refused(flag, value, fragment, capsys):
    from libs.commands.infer import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(["c.yaml", "k.pth", "f.pt", flag, value])
    assert exc.value.code == 2 and fragment in capsys.readouterr().err


def test_infer_absurd_duration_is_refused(run, tmp_path, capsys):
    code, out = _infer(run, tmp_path, "--default-fps", "1e-300")
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "give a duration of" in err and "check --default-fps" in err


def test_infer_plot_without_matplotlib_fails_before_inference(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out = _infer(run, tmp_path, "--plot", str(tmp_path / "t.png"))
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()  # nothing written
    assert "tools/infer.py --plot needs matplotlib: pip install matplotlib" in err


@pytest.mark.parametrize(
    "make,why",
    [
        (lambda p: __import__("os").mkfifo(p), "is not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "is a symbolic link"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b" " * 5000), "is larger than 4096 bytes"),
        (lambda p: p.write_text('{"pid": true, "host": "h"}'), "without an integer pid > 0"),
        (lambda p: p.write_text('{"pid": -3, "host": "h"}'), "without an integer pid > 0"),
        (lambda p: p.write_text("[1, 2]"), "without an integer pid > 0"),
    ],
)
def test_foreign_lock_files_are_refused_not_read(tmp_path, make, why):
    """A FIFO would hang the read, /dev/zero exhaust memory, `pid: true` pass for pid 1."""
    from libs.engine.run_lock import LOCK_NAME, RunLock, RunLockedError

    make(tmp_path / LOCK_NAME)
    with pytest.raises(RunLockedError) as exc:
        RunLock(tmp_path).acquire()
    assert why in str(exc.value)
    assert "it is not a lock this project wrote; if no run is active" in str(exc.value)
    assert (tmp_path / LOCK_NAME).exists() or (tmp_path / LOCK_NAME).is_symlink()  # left alone


def test_torn_lock_is_still_taken_over(tmp_path):
    from libs.engine.run_lock import LOCK_NAME, RunLock

    (tmp_path / LOCK_NAME).write_text('{"pid": 12')  # a writer died mid-write
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_resume_with_a_fifo_lock_is_one_error_line(tmp_path, capsys, in_process):
    import os

    import train

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "last.pth").write_bytes(b"unused: the lock is checked first")
    os.mkfifo(folder / ".lock")
    repo = Path(__file__).resolve().parents[1]
    rc = train.main([str(repo / "configs/demo_thumos_dbm.yaml"), "--resume", str(folder), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"lock file {folder / '.lock'} is not a regular file" in err


# ---------------------------------------------------------------------------------------------
# tools/paper_table.py: malformed run files

GOOD = {"tiou": [0.3, 0.5, 0.7], "mAP": [0.5, 0.4, 0.3], "average_mAP": 0.4}


def _paper_run(tmp_path, metrics_text, config=None, name="run"):
    folder = tmp_path / name
    folder.mkdir()
    config = config if config is not None else {"dataset": {"name": "thumos14"},
                                                "model": {"block": {"type": "dbm"}}}
    (folder / "config.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    (folder / "metrics.json").write_text(metrics_text)
    return folder


@pytest.mark.parametrize(
    "metrics,fragment",
    [
        ("[1, 2]", "expected a metrics object (train.py / eval.py), got [1, 2]"),
        (json.dumps({**GOOD, "tiou": 5}), "'tiou' must be a list of numbers, got 5"),
        (json.dumps({**GOOD, "protocol": "x"}), "'protocol' must be an object, got 'x'"),
        (json.dumps(GOOD)[:-1] + ', "epoch": 1e400}', "'epoch': expected a finite number, got inf"),
        (json.dumps({**GOOD, "epoch": 2.5}), "'epoch': expected a whole number >= 0, got 2.5"),
        (json.dumps({**GOOD, "mAP": ["x", 1, 2]}), "metrics.json 'mAP': expected a finite number, got 'x'"),
    ],
)
def test_paper_table_malformed_metrics_are_one_error_naming_the_file(tmp_path, capsys, metrics, fragment):
    from libs.commands import paper_table

    folder = _paper_run(tmp_path, metrics)
    assert paper_table.main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(folder) in err and "Traceback" not in err


def test_paper_table_malformed_config_and_history(tmp_path, capsys):
    from libs.commands import paper_table

    folder = _paper_run(tmp_path, json.dumps(GOOD), config="dataset: [1]\n")
    assert paper_table.main([str(folder)]) == 2
    assert "config.yaml: 'dataset' must be a mapping, got [1]" in capsys.readouterr().err
    best_on_val = {**GOOD, "protocol": {"checkpoint": "best-on-val"}}
    folder = _paper_run(tmp_path, json.dumps({"last": GOOD}), name="fifo")
    import os

    os.mkfifo(folder / "val_history.jsonl")  # a plain open() would hang here
    assert paper_table.main([str(folder)]) == 2
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err
    folder = _paper_run(tmp_path, json.dumps({"last": GOOD}), name="torn")
    (folder / "val_history.jsonl").write_text(json.dumps(best_on_val) + "\n{\"tiou\n")
    assert paper_table.main([str(folder)]) == 2
    assert "val_history.jsonl line 2: not a JSON record" in capsys.readouterr().err


def test_paper_table_custom_and_demo_runs_say_why(tmp_path, capsys):
    from libs.commands import paper_table

    custom = {"dataset": {"name": "activitynet_format"}, "model": {"block": {"type": "dbm"}}}
    folder = _paper_run(tmp_path, json.dumps(GOOD), config=custom, name="custom")
    with pytest.raises(SystemExit):
        paper_table.main([str(folder)])
    err = capsys.readouterr().err
    assert "dataset 'activitynet_format' of its config.yaml is not a paper dataset (one of thumos14" in err
    demo = {"dataset": {"name": "thumos14", "feat_folder": "./data/synthetic_thumos"},
            "model": {"block": {"type": "dbm"}}, "config_path": "configs/demo_thumos_dbm.yaml"}
    folder = _paper_run(tmp_path, json.dumps(GOOD), config=demo, name="demo")
    assert paper_table.main([str(folder)]) == 0
    assert "it was trained on synthetic features; its comparison to the paper's numbers is not" in capsys.readouterr().err
    demo["dataset"]["feat_folder"] = "./data/thumos/features"
    folder = _paper_run(tmp_path, json.dumps(GOOD), config=demo, name="demo2")
    assert paper_table.main([str(folder)]) == 0
    assert "configs/demo_thumos_dbm.yaml is not one of the paper's configs" in capsys.readouterr().err
    paper = {**demo, "config_path": "configs/thumos_internvideo2_6b_dbm.yaml"}
    folder = _paper_run(tmp_path, json.dumps(GOOD), config=paper, name="paper")
    assert paper_table.main([str(folder)]) == 0
    assert "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# raw prediction files (tools/rescore.py): every field checked, the message names file and video


def _raw_file(tmp_path, config=None, **changes):
    video = {"video_id": "v1", "segments": torch.tensor([[1.0, 4.0], [2.0, 6.0]]),
             "scores": torch.tensor([0.9, 0.5]), "labels": torch.tensor([0, 1]),
             "fps": 30.0, "feat_stride": 8.0, "feat_num_frames": 16.0, "duration": 30.0, **changes}
    path = tmp_path / "raw.pt"
    torch.save({"format": "raw_predictions", "version": 1, "videos": [video],
                "id_to_name": {0: "Jump", 1: "Run"}, "config": {} if config is None else config}, path)
    return path


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"segments": torch.zeros(2, 3)}, "expected segments [K, 2], scores [K] and labels [K], got segments [2, 3]"),
        ({"scores": torch.zeros(2, 1)}, "got segments [2, 2], scores [2, 1], labels [2]"),
        ({"labels": torch.tensor([0, 1, 1])}, "scores [2], labels [3]"),
        ({"segments": torch.tensor([[1.0, float("nan")], [2.0, 6.0]])}, "'segments' holds a non-finite value (NaN or Inf)"),
        ({"scores": torch.tensor([0.9, float("inf")])}, "'scores' holds a non-finite value (NaN or Inf)"),
        ({"labels": torch.tensor([0.5, 1.0])}, "'labels' must hold integer class ids, got torch.float32"),
        ({"labels": torch.tensor([0, -1])}, "'labels' holds a negative class id -1"),
        ({"scores": torch.tensor([1, 0])}, "'scores' must hold floating-point numbers, got torch.int64"),
    ],
)
def test_raw_file_fields_are_checked_naming_file_and_video(tmp_path, changes, fragment):
    from libs.inference.raw import RawPredictions

    path = _raw_file(tmp_path, **changes)
    with pytest.raises(ValueError) as exc:
        RawPredictions.load(path)
    assert str(exc.value).startswith(f"{path}: video 'v1': ") and fragment in str(exc.value)


def test_raw_file_config_must_be_a_dict(tmp_path):
    from libs.inference.raw import RawPredictions

    path = _raw_file(tmp_path, config="x")
    with pytest.raises(ValueError, match="'config' must be a dict \\(as eval.py --save-raw writes it\\), got str 'x'"):
        RawPredictions.load(path)
    assert len(RawPredictions.load(_raw_file(tmp_path))) == 1  # the well-formed file loads
    empty = _raw_file(tmp_path, segments=torch.zeros(0, 2), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long))
    assert len(RawPredictions.load(empty).detections[0]) == 0


# ---------------------------------------------------------------------------------------------
# tools/visualize.py pr and the install hints


def test_pr_chart_of_results_without_true_positives(tmp_path):
    from libs.commands import visualize

    gt = {"database": {"v1": {"subset": "validation", "duration": 30.0, "fps": 30.0, "annotations": [
        {"label": "Jump", "label_id": 0, "segment": [1.0, 5.0]},
        {"label": "Run", "label_id": 1, "segment": [10.0, 15.0]}]}}}
    results = {"results": {"v1": [{"label": "Jump", "segment": [20.0, 25.0], "score": 0.9}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = tmp_path / "pr.png"
    argv = ["pr", str(tmp_path / "res.json"), "--gt", str(tmp_path / "gt.json"), "--out", str(out)]
    assert visualize.main(argv) == 0  # was: x and y must have same first dimension
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_pr_out_has_help_and_default():
    from libs.commands.visualize import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["pr"]
    assert "the PNG to write (default: pr.png)" in " ".join(sub.format_help().split())


def test_diagnosis_figures_hint_is_a_command_that_works(monkeypatch):
    from libs.diagnosis import figures

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ValueError) as exc:
        figures._figure((4, 3))
    assert str(exc.value) == ("the diagnosis figures need matplotlib: pip install matplotlib, or skip "
                              "them with --no-figures")
