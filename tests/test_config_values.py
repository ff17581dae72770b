"""Config values checked at load time (libs/core/config_values.py): a bad number is one clear
error naming the key and where it came from (the file or --opts), before any run folder exists.
"""
from __future__ import annotations

import argparse
import glob
import math
import os

import pytest

from libs.cli import add_tiou_arg
from libs.core.config import ConfigError, load_config
from tests.bad_input_workspace import Workspace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path)


def _error(ws: Workspace, *opts: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(ws.config(), opts)
    return str(info.value)


# ---------------------------------------------------------------- F4: tIoU thresholds


@pytest.mark.parametrize("value, what", [
    ("[-1, 5]", "dataset.tiou_thresholds must be numbers in (0, 1], got -1.0"),
    ("[0.5, 5]", "dataset.tiou_thresholds must be numbers in (0, 1], got 5.0"),
    ("[0, 0.5]", "dataset.tiou_thresholds must be numbers in (0, 1], got 0.0"),
    ("[.nan]", "dataset.tiou_thresholds[0] must be a finite number, got nan"),
    ("[]", "dataset.tiou_thresholds must not be empty"),
    ("[0.5, 0.7, 0.5]", "dataset.tiou_thresholds has 0.5 twice"),
])
def test_bad_tiou_thresholds_from_opts(ws, value, what):
    message = _error(ws, f"dataset.tiou_thresholds={value}")
    assert message.startswith(f"--opts dataset.tiou_thresholds={value}: "), message
    assert what in message


def test_bad_tiou_thresholds_from_the_file(ws):
    ws.cfg["dataset"]["tiou_thresholds"] = [0.3, 1.5]
    message = _error(ws)
    assert message.startswith(ws.config() + ": dataset.tiou_thresholds must be numbers in (0, 1]")


def test_tiou_one_is_accepted(ws):
    assert load_config(ws.config(), ["dataset.tiou_thresholds=[1, 0.5]"]).dataset.tiou_thresholds == (1.0, 0.5)


def test_the_tiou_flag_refuses_a_duplicate(capsys):
    parser = argparse.ArgumentParser(prog="eval.py")
    add_tiou_arg(parser, None, "thresholds")
    assert parser.parse_args(["--tiou", "0.5", "0.7"]).tiou == [0.5, 0.7]
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--tiou", "0.5", "0.5"])
    assert info.value.code == 2
    assert "--tiou gives 0.5 twice; give each threshold once" in capsys.readouterr().err


def _run(main, argv, capsys) -> str:
    capsys.readouterr()
    assert main(list(map(str, argv))) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error: ") == 1, err[-3000:]
    return err


def test_train_refuses_bad_tiou_before_the_run_folder(ws, capsys, in_process):
    import train

    err = _run(train.main, ws.train("dataset.tiou_thresholds=[-1, 5]"), capsys)
    assert "error: --opts dataset.tiou_thresholds=[-1, 5]: dataset.tiou_thresholds" in err
    assert not (ws.root / "runs").exists()


def test_eval_refuses_bad_tiou(ws, capsys, in_process):
    import eval as eval_cli

    err = _run(eval_cli.main, ws.eval(ws.checkpoint(), "dataset.tiou_thresholds=[-1, 5]"), capsys)
    assert "dataset.tiou_thresholds must be numbers in (0, 1], got -1.0" in err
    assert not (ws.root / "res.json").exists()


# ---------------------------------------------------------------- every shipped config


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))))
def test_shipped_configs_pass_the_value_checks(path):
    cfg = load_config(path)
    assert all(0 < t <= 1 for t in cfg.dataset.tiou_thresholds)
    assert math.isfinite(cfg.opt.learning_rate)


# ---------------------------------------------------------------- F10: numeric ranges


@pytest.mark.parametrize("override, what", [
    ("test.nms_sigma=.nan", "test.nms_sigma must be a finite number, got nan"),
    ("test.nms_sigma=0", "test.nms_sigma must be > 0, got 0.0"),
    ("opt.learning_rate=.inf", "opt.learning_rate must be a finite number, got inf"),
    ("opt.learning_rate=.nan", "opt.learning_rate must be a finite number, got nan"),
    ("opt.learning_rate=-0.1", "opt.learning_rate must be > 0, got -0.1"),
    ("loader.batch_size=0", "loader.batch_size must be >= 1, got 0"),
    ("loader.num_workers=-1", "loader.num_workers must be >= 0, got -1"),
    ("opt.epochs=-1", "opt.epochs must be >= 0, got -1"),
    ("opt.warmup_epochs=-2", "opt.warmup_epochs must be >= 0, got -2"),
    ("opt.weight_decay=-1", "opt.weight_decay must be >= 0, got -1.0"),
    ("opt.ema_decay=1.5", "opt.ema_decay must be in [0, 1], got 1.5"),
    ("opt.schedule_steps=[5, -1]", "opt.schedule_steps[1] must be >= 0, got -1"),
    ("dataset.feat_stride=-8", "dataset.feat_stride must be > 0, got -8.0"),
    ("dataset.num_frames=0", "dataset.num_frames must be > 0, got 0.0"),
    ("dataset.default_fps=0", "dataset.default_fps must be > 0, got 0.0"),
    ("dataset.default_fps=.inf", "dataset.default_fps must be a finite number, got inf"),
    ("dataset.trunc_thresh=2", "dataset.trunc_thresh must be in [0, 1], got 2.0"),
    ("dataset.crop_ratio=[0.9, 1.5]", "dataset.crop_ratio must be [low, high] with 0 < low <= high <= 1, got [0.9, 1.5]"),
    ("dataset.crop_ratio=[1.0, 0.5]", "dataset.crop_ratio must be [low, high] with 0 < low <= high <= 1, got [1.0, 0.5]"),
    ("dataset.max_seq_len=0", "dataset.max_seq_len must be an integer in 1 .. 1048576, got 0"),
    ("dataset.num_classes=0", "dataset.num_classes must be an integer in 1 .. 65536, got 0"),
    ("test.iou_threshold=1.5", "test.iou_threshold must be in [0, 1], got 1.5"),
    ("test.min_score=-0.1", "test.min_score must be in [0, 1], got -0.1"),
    ("test.pre_nms_thresh=2", "test.pre_nms_thresh must be in [0, 1], got 2.0"),
    ("test.voting_thresh=-1", "test.voting_thresh must be in [0, 1], got -1.0"),
    ("test.max_seg_num=0", "test.max_seg_num must be >= 1, got 0"),
    ("test.pre_nms_topk=0", "test.pre_nms_topk must be >= 1, got 0"),
    ("test.duration_thresh=-1", "test.duration_thresh must be >= 0, got -1.0"),
    ("train.cls_prior_prob=1", "train.cls_prior_prob must be in (0, 1), got 1.0"),
    ("train.init_loss_norm=0", "train.init_loss_norm must be > 0, got 0.0"),
    ("train.label_smoothing=1", "train.label_smoothing must be in [0, 1), got 1.0"),
    ("train.loss_weight=.nan", "train.loss_weight must be a finite number, got nan"),
    ("train.head_empty_cls=[5]", "train.head_empty_cls must be class ids in 0 .. 1 (dataset.num_classes = 2), got 5"),
    ("model.max_buffer_len_factor=0", "model.max_buffer_len_factor must be in (0, 1000], got 0.0"),
    ("model.regression_range=[[0, 4], [8, 4]]", "model.regression_range must be [min, max] pairs with 0 <= min <= max, got [8.0, 4.0]"),
    ("model.regression_range=[[0, 4], [4, .inf]]", "model.regression_range[1][1] must be a finite number, got inf"),
    ("model.embd_dim=0", "model.embd_dim must be an integer in 1 .. 16384, got 0"),
    ("model.arch=[1, 1, -1]", "model.arch[2] must be an integer in 0 .. 64, got -1"),
    ("threads=-1", "threads must be an integer in 0 .. 4096, got -1"),
])
def test_bad_numbers_name_the_key_and_the_override(ws, override, what):
    message = _error(ws, override)
    assert message.startswith(f"--opts {override}: "), message
    assert what in message, message


def test_bad_number_in_the_file_names_the_file(ws):
    ws.cfg["dataset"]["feat_stride"] = float("nan")
    assert _error(ws) == f"{ws.config()}: dataset.feat_stride must be a finite number, got nan"


def test_a_later_override_fixes_the_file(ws):
    ws.cfg["opt"]["learning_rate"] = -1
    assert load_config(ws.config(), ["opt.learning_rate=0.01"]).opt.learning_rate == 0.01


@pytest.mark.parametrize("opt", ["test.nms_sigma=.nan", "opt.learning_rate=.inf", "loader.batch_size=0",
                                 "opt.epochs=-1"])
def test_train_refuses_bad_numbers_before_the_run_folder(ws, capsys, in_process, opt):
    import train

    err = _run(train.main, ws.train(opt), capsys)
    assert f"error: --opts {opt}: {opt.split('=')[0]} must be" in err
    assert not (ws.root / "runs").exists()


# ---------------------------------------------------------------- F12: keys and sizes


@pytest.mark.parametrize("text, what", [
    ("1: 2\n", "top level: keys must be strings, got int 1"),
    ("opt:\n  1: 2\n", "opt: keys must be strings, got int 1"),
    ("test:\n  on: 2\n", "test: keys must be strings, got bool True; YAML reads yes/no/on/off as "
                          "booleans, quote such a key"),
    ("model:\n  block:\n    args:\n      3: 4\n", "model.block.args: keys must be strings, got int 3"),
])
def test_a_non_string_key_is_named(tmp_path, text, what):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: {what}"


def test_a_non_string_key_in_opts_names_the_override(ws):
    message = _error(ws, "model.block.args={1: 2}")
    assert message == "--opts model.block.args={1: 2}: model.block.args: keys must be strings, got int 1"


@pytest.mark.parametrize("override, what", [
    ("model.block.args.d_state=99999999999999999999",
     "model.block.args.d_state must be an integer in 1 .. 1024, got 99999999999999999999"),
    ("model.block.args.d_conv=0", "model.block.args.d_conv must be an integer in 1 .. 64, got 0"),
    ("model.block.args.expand=1000", "model.block.args.expand must be an integer in 1 .. 16, got 1000"),
    ("model.block.args.drop_path=1.5", "model.block.args.drop_path must be in [0, 1), got 1.5"),
    ("model.block.args.drop_path=.nan", "model.block.args.drop_path must be a finite number, got nan"),
    ("model.embd_dim=99999999999999999999", "model.embd_dim must be an integer in 1 .. 16384"),
    ("model.n_mha_win_size=[9, 99999999999]", "model.n_mha_win_size[1] must be an integer in -1 .. 1048576"),
    ("opt.print_freq=99999999999999999999", "opt.print_freq must be an integer in -2**63 .. 2**63 - 1"),
    ("opt.learning_rate=" + "9" * 400, "opt.learning_rate: 999999999999... (400 digits) is too large for a number"),
])
def test_sizes_are_capped_with_the_key_named(ws, override, what):
    ws.cfg["model"]["block"] = {"type": "dbm", "args": {"d_state": 16}}
    message = _error(ws, override)
    assert what in message, message


def test_train_refuses_a_huge_block_size_without_a_traceback(ws, capsys, in_process):
    import train

    ws.cfg["model"]["block"] = {"type": "dbm", "args": {}}
    err = _run(train.main, ws.train("model.block.args.d_state=99999999999999999999"), capsys)
    assert "error: --opts model.block.args.d_state=99999999999999999999: model.block.args.d_state must be" in err
    assert not (ws.root / "runs").exists()


def test_a_long_override_is_shortened_in_the_message(ws):
    message = _error(ws, "opt.print_freq=" + "9" * 300)
    assert message.startswith("--opts opt.print_freq=999") and len(message) < 300, message
