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
    ("[.nan]", "dataset.tiou_thresholds must be numbers in (0, 1], got nan"),
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
