"""Checkpoints that load with weights_only but have the wrong structure (issue 15 item 8): one
`error:` line naming the file and every bad key, never a traceback or silent nonsense.

The training checkpoint is built without training (`_build_state` + `checkpoint_state`), then
one part of it is broken per case and resumed with `train.py --resume FILE`.
"""

from pathlib import Path

import pytest
import torch

from tests.test_resume_exact import make_tiny_config


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> dict:
    from libs.core.config import load_config
    from libs.engine.resume import checkpoint_state
    from libs.engine.train_loop import _build_state
    from libs.modeling import build_model

    root = tmp_path_factory.mktemp("schema")
    cfg = load_config(str(make_tiny_config(root, num_train=2)))
    model = build_model(cfg.model, cfg.train, cfg.test)
    state = _build_state(cfg, model, 1, torch.device("cpu"))
    return checkpoint_state(state, cfg, torch.Generator())


def _set(key, value):
    def mutate(ckpt):
        ckpt[key] = value

    return mutate


def _other_optimizer(ckpt):
    ckpt["optimizer"]["param_groups"][0]["params"] = [0]  # a model with one tensor


def _drop(key):
    def mutate(ckpt):
        del ckpt[key]

    return mutate


def _non_tensor_weight(ckpt):
    ckpt["model"]["backbone.extra"] = 1.0


def _two_problems(ckpt):
    ckpt["epoch"], ckpt["rng"] = -5, {}


CASES = {
    "rng is {}": (_set("rng", {}), "key 'rng' lacks ['python', 'numpy', 'torch']"),
    "rng torch state not a tensor": (
        lambda c: c["rng"].update(torch=[1, 2]), "key 'rng' 'torch' is not a uint8 tensor"),
    "rng_per_rank holds {}": (_set("rng_per_rank", [{}]), "key 'rng_per_rank' [0] lacks"),
    "config as a string": (_set("config", "epochs: 3"), "key 'config' is a str, expected the config as a dict"),
    "non-tensor weight": (_non_tensor_weight, "key 'model' holds 1 entries that are not tensors (e.g. 'backbone.extra')"),
    "weights not a dict": (_set("model_ema", [1, 2]), "key 'model_ema' is a list, expected a dict of tensors"),
    "epoch -5": (_set("epoch", -5), "key 'epoch' is -5, expected an int >= 0"),
    "iteration as text": (_set("iteration", "3"), "key 'iteration' is '3', expected an int >= 0"),
    "epoch_iter as a bool": (_set("epoch_iter", True), "key 'epoch_iter' is True, expected an int >= 0"),
    "junk scheduler state": (_set("scheduler", {"junk": 1}), "key 'scheduler' has last_epoch None"),
    "optimizer not a state_dict": (_set("optimizer", "adam"), "key 'optimizer' is not an optimizer state_dict"),
    "grad_scaler junk": (_set("grad_scaler", 5), "key 'grad_scaler' is not a dict"),
    "loss_normalizer NaN": (_set("loss_normalizer", float("nan")), "key 'loss_normalizer' is nan"),
    "missing optimizer": (_drop("optimizer"), "not a checkpoint written by train.py (missing ['optimizer'])"),
    "two problems at once": (_two_problems, "key 'epoch' is -5, expected an int >= 0; key 'rng' lacks"),
    "optimizer of another model": (_other_optimizer, "key 'optimizer' does not fit this run's optimizer"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_damaged_training_checkpoint_is_one_clear_error(name, good_checkpoint, tmp_path, capsys, in_process):
    import copy

    import train

    mutate, fragment = CASES[name]
    ckpt = copy.deepcopy(good_checkpoint)
    mutate(ckpt)
    path = tmp_path / "last.pth"
    torch.save(ckpt, path)
    (tmp_path / ".actionmamba_run").write_text("")  # a run folder: --resume writes only into one
    capsys.readouterr()
    status = train.main(["--resume", str(path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and err.count("error: ") == 1, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(path) in line and fragment in line, line


def test_the_undamaged_checkpoint_passes_the_checks(good_checkpoint):
    from libs.engine.checkpoint_schema import check_training_checkpoint

    check_training_checkpoint(good_checkpoint, "x.pth")  # no error


@pytest.mark.parametrize(
    "state, fragment",
    [
        ({"model_ema": {"a": "b"}}, "key 'model_ema' holds 1 entries that are not tensors"),
        ({"state_dict": "weights"}, "key 'state_dict' is a str, expected a dict of tensors"),
        ({"model": {"w": torch.zeros(1)}, "epoch": -5}, "key 'epoch' is -5, expected an int >= 0"),
        ({"model": {"w": torch.zeros(1)}, "config": "text"}, "key 'config' is a str"),
    ],
)
def test_eval_reads_weights_epoch_and_config_checked(state, fragment, tmp_path):
    from libs.engine.checkpoint import load_model_weights
    from libs.engine.checkpoint_schema import CheckpointError

    path = tmp_path / "model.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(path)
    assert str(path) in str(info.value) and fragment in str(info.value), str(info.value)


def test_eval_of_a_damaged_checkpoint_is_one_error_line(good_checkpoint, tmp_path, capsys, in_process):
    import eval as eval_cli

    path = tmp_path / "last.pth"
    torch.save({**good_checkpoint, "config": ["not", "a", "dict"]}, path)
    config = Path(tmp_path / "c.yaml")
    import yaml

    config.write_text(yaml.safe_dump({k: v for k, v in good_checkpoint["config"].items()
                                      if k != "config_path"}))  # fmt: skip
    status = eval_cli.main([str(config), str(path), "--device", "cpu",
                            "--out", str(tmp_path / "r.json"), "--json", str(tmp_path / "m.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "key 'config' is a list, expected the config as a dict" in err.strip().splitlines()[-1]


class _Tripwire:
    """Unpickling this runs code (`str.upper` here): only with --allow-unsafe-checkpoint."""

    def __reduce__(self):
        return (str.upper, ("tripped",))


def test_eval_allow_unsafe_checkpoint_is_explicit(good_checkpoint, tmp_path, capsys, in_process):
    import yaml

    import eval as eval_cli

    path = tmp_path / "unsafe.pth"
    torch.save({**good_checkpoint, "hook": _Tripwire()}, path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in good_checkpoint["config"].items()
                                      if k != "config_path"}))  # fmt: skip
    argv = [str(config), str(path), "--device", "cpu",
            "--out", str(tmp_path / "r.json"), "--json", str(tmp_path / "m.json")]  # fmt: skip
    assert eval_cli.main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "If you trust the file" in line and "eval.py --allow-unsafe-checkpoint" in line
    assert eval_cli.main([*argv, "--allow-unsafe-checkpoint"]) == 0
    assert "with full unpickling (allow_unsafe): it can run code" in capsys.readouterr().err
