"""libs/cli.py: the device rule and the error wrapper every entry point shares."""

import argparse

import pytest
import torch

from libs.cli import add_device_arg, add_opts_arg, pick_device, run_cli


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda was requested but no CUDA GPU"):
            pick_device("cuda")


def test_run_cli_turns_user_errors_into_one_line(capsys):
    def bad_value():
        raise ValueError("dataset.feat_folder: no such folder /x")

    def missing_file():
        raise FileNotFoundError("checkpoint not found: /x/last.pth")

    assert run_cli(lambda: 0) == 0
    assert run_cli(bad_value) == 2
    assert capsys.readouterr().err == "error: dataset.feat_folder: no such folder /x\n"
    assert run_cli(missing_file) == 2
    assert capsys.readouterr().err == "error: checkpoint not found: /x/last.pth\n"


def test_run_cli_lets_bugs_through():
    def bug():
        raise TypeError("a bug, not a bad input")

    with pytest.raises(TypeError):
        run_cli(bug)


def test_shared_options():
    parser = argparse.ArgumentParser()
    add_opts_arg(parser, "opt.epochs=3")
    add_device_arg(parser)
    args = parser.parse_args(["--opts", "a=1", "b=2", "--device", "cpu"])
    assert args.opts == ["a=1", "b=2"] and args.device == "cpu"
    assert parser.parse_args([]).opts == [] and parser.parse_args([]).device is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])
