"""Atomic checkpoint writes, safe loading (ours and published), run folders, RNG state."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from libs.core.config import load_config
from libs.engine.checkpoint import (
    load_checkpoint,
    load_model_weights,
    load_weights,
    save_checkpoint,
)
from libs.engine.run_folder import make_run_folder
from libs.utils.io import atomic_write_json, unique_path
from libs.utils.seeding import capture_rng_state, fix_random_seed, restore_rng_state


@pytest.fixture(autouse=True)
def _restore_global_modes(monkeypatch):
    """fix_random_seed flips process-wide switches; keep them from leaking into other tests."""
    for name in (
        "PYTHONHASHSEED",
        "CUBLAS_WORKSPACE_CONFIG",
    ):  # monkeypatch restores them afterwards
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _net():
    return nn.Sequential(nn.Conv1d(3, 4, 3), nn.Linear(4, 2))


def test_save_load_roundtrip_is_weights_only(tmp_path):
    net = _net()
    gen = fix_random_seed(7)
    state = {
        "model": net.state_dict(),
        "epoch": 3,
        "loss_normalizer": 91.8,
        "rng": capture_rng_state(gen),
        "config": {"opt": {"epochs": 3, "schedule_steps": []}},
    }
    path = tmp_path / "last.pth"
    save_checkpoint(path, state)
    loaded = torch.load(path, weights_only=True)  # no custom classes anywhere in our checkpoints
    assert loaded["epoch"] == 3 and loaded["loss_normalizer"] == 91.8
    torch.testing.assert_close(loaded["model"], net.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left behind


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"model": _net().state_dict(), "epoch": 1})
    before = path.read_bytes()

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")  # partial bytes, then the "disk full" / kill
        raise OSError("simulated failure mid-write")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"model": _net().state_dict(), "epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_missing_and_corrupt_files_are_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(missing)
    corrupt = tmp_path / "bad.pth"
    save_checkpoint(corrupt, {"model": _net().state_dict()})
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # truncated download
    with pytest.raises(ValueError, match="bad.pth"):
        load_checkpoint(corrupt)
    with pytest.raises(ValueError, match="bad.pth"):
        load_model_weights(corrupt)


def test_pickled_objects_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "obj": _net()}, path)  # a whole module: needs unpickling code
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(path)


def test_published_pth_tar_prefers_ema_and_strips_module(tmp_path):
    net, ema = _net(), _net()
    published = {
        "epoch": 35,
        "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
        "state_dict_ema": {f"module.{k}": v for k, v in ema.state_dict().items()},
        "optimizer": torch.optim.AdamW(net.parameters()).state_dict(),
        "scheduler": {"last_epoch": 3500, "base_lrs": [1e-4, 1e-4]},
    }
    path = tmp_path / "epoch_035.pth.tar"
    torch.save(published, path)
    weights, meta = load_model_weights(path)
    assert (
        meta["format"] == "published"
        and meta["weights"] == "state_dict_ema"
        and meta["epoch"] == 35
    )
    target = _net()
    load_weights(target, weights)
    torch.testing.assert_close(target.state_dict(), ema.state_dict())
    plain, meta = load_model_weights(path, prefer_ema=False)
    assert meta["weights"] == "state_dict"
    torch.testing.assert_close(plain, net.state_dict())


def test_ours_prefers_model_ema(tmp_path):
    net, ema = _net(), _net()
    path = tmp_path / "last.pth"
    save_checkpoint(
        path,
        {
            "model": net.state_dict(),
            "model_ema": ema.state_dict(),
            "epoch": 2,
            "loss_normalizer": 12.5,
            "config": {},
        },
    )
    weights, meta = load_model_weights(path)
    assert (
        meta["format"] == "ours"
        and meta["weights"] == "model_ema"
        and meta["loss_normalizer"] == 12.5
    )
    torch.testing.assert_close(weights, ema.state_dict())


def test_shape_mismatch_lists_every_key():
    weights = _net().state_dict()
    weights["0.weight"] = torch.zeros(5, 3, 3)
    weights["extra.bias"] = torch.zeros(1)
    del weights["1.bias"]
    with pytest.raises(ValueError) as err:
        load_weights(_net(), weights, source="ckpt.pth")
    msg = str(err.value)
    assert "ckpt.pth" in msg and "3 problem" in msg
    assert "0.weight: shape (5, 3, 3) in the checkpoint, (4, 3, 3) in the model" in msg
    assert "1.bias: missing" in msg and "extra.bias: in the checkpoint but not in the model" in msg


def test_unique_path_and_atomic_json(tmp_path):
    target = tmp_path / "results_eval.json"
    assert unique_path(target) == target
    atomic_write_json(target, {"a": 1})
    assert unique_path(target) == tmp_path / "results_eval_1.json"
    (tmp_path / "results_eval_1.json").write_text("{}")
    assert unique_path(target) == tmp_path / "results_eval_2.json"
    folder = tmp_path / "run"
    folder.mkdir()
    assert unique_path(folder) == tmp_path / "run_1"


def test_run_folder_never_reused_unless_overwrite(tmp_path):
    cfg = load_config(data={"output_folder": str(tmp_path)}, path="configs/my_cfg.yaml")
    first, _ = make_run_folder(cfg, "exp")
    assert first == tmp_path / "my_cfg_exp" and (first / "config.yaml").is_file()
    assert load_config(str(first / "config.yaml")).opt == cfg.opt  # config.yaml loads back
    (first / "last.pth").write_bytes(b"keep me")
    second, _ = make_run_folder(cfg, "exp")
    assert second == tmp_path / "my_cfg_exp_1" and (first / "last.pth").exists()
    again, _ = make_run_folder(cfg, "exp", overwrite=True)
    assert again == first and not (first / "last.pth").exists()
    (tmp_path / "my_cfg_other").mkdir()  # exists but is not a run folder
    with pytest.raises(ValueError, match="not a run folder"):
        make_run_folder(cfg, "other", overwrite=True)


def test_rng_capture_restore(tmp_path):
    gen = fix_random_seed(123)
    state = capture_rng_state(gen)
    path = tmp_path / "rng.pth"
    save_checkpoint(path, {"rng": state})
    draws = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    fix_random_seed(999)
    restore_rng_state(load_checkpoint(path)["rng"], gen)
    assert (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    ) == draws
    assert os.environ["PYTHONHASHSEED"] == "999"
