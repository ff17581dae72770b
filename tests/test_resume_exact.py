"""Exact resume: a run killed (SIGKILL, Ctrl-C) anywhere and resumed ends bit-identical.

The data is 8 training + 2 validation synthetic videos; the model is a tiny window-attention
detector with drop path, and the training crops are random, so training draws from Python's
`random` (crops), torch's RNG (drop path) and the loader's generator (shuffling). One run is
2 epochs x 4 iterations with a checkpoint every 2 iterations. `make_tiny_config` is shared with
the accumulation / AMP / DDP tests.
"""

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import process_state_restored
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TOTAL_ITERS = 8  # 2 epochs x (8 videos / batch 2)


def _write_tiny_data(root: Path, num_train: int) -> tuple[Path, Path]:
    """Annotations of num_train + 2 videos (2 validation) and their synthetic features."""
    from libs.commands.make_synthetic import make_synthetic

    database = {}
    for i in range(num_train + 2):
        acts = [
            {"label": "Jump", "label_id": 0, "segment": [2.0 + i, 8.0 + i]},
            {"label": "Run", "label_id": 1, "segment": [15.0, 20.0 + 0.5 * i]},
        ]
        subset = "training" if i < num_train else "validation"
        database[f"v{i}"] = {"subset": subset, "duration": 30.0, "fps": 30.0, "annotations": acts}
    json_file = root / "anno.json"
    json_file.write_text(json.dumps({"database": database}))
    feats = root / "feats"
    make_synthetic(
        str(json_file), str(feats), dim=8, feat_stride=8, num_frames=16, ext=".pt", seed=0
    )
    return json_file, feats


def _tiny_config(json_file: Path, feats: Path, runs: Path) -> dict:
    return {
        "dataset": {
            "name": "activitynet_format", "json_file": str(json_file), "feat_folder": str(feats),
            "file_ext": ".pt", "feat_stride": 8, "num_frames": 16, "input_dim": 8,
            "num_classes": 2, "max_seq_len": 128, "crop_ratio": [0.8, 1.0],
            "tiou_thresholds": [0.5],
        },
        "loader": {"batch_size": 2, "num_workers": 0},
        "model": {
            "embd_dim": 8, "fpn_dim": 8, "head_dim": 8, "arch": [1, 1, 1],
            "regression_range": [[0, 4], [4, 10000]], "n_mha_win_size": 5,
            "block": {"type": "window_attn", "args": {"n_head": 2, "drop_path": 0.3}},
        },
        "train": {"init_loss_norm": 10, "clip_grad_l2norm": 1.0},
        "test": {"pre_nms_topk": 100, "max_seg_num": 20},
        "opt": {
            "learning_rate": 1e-2, "weight_decay": 0.05, "epochs": 1, "warmup_epochs": 1,
            "ema_decay": 0.9, "ckpt_freq": 1, "print_freq": 0, "ckpt_every_iters": 2,
            "keep_last": 2,
        },
        "output_folder": str(runs),
    }  # fmt: skip


def make_tiny_config(root: Path, num_train: int = 8, **overrides) -> Path:
    """Write synthetic features, annotations and a tiny config under `root`; returns the YAML.

    `overrides` are top-level sections merged into the config (e.g. opt={...}).
    """
    cfg = _tiny_config(*_write_tiny_data(root, num_train), root / "runs")
    for section, values in overrides.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_same_checkpoint(a_path: Path, b_path: Path) -> None:
    """Every tensor of model, EMA and optimizer equal (torch.equal), and the same counters."""
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    for key in ("epoch", "epoch_iter", "iteration"):
        assert a[key] == b[key], key
    assert a["model"]["loss_normalizer"] == b["model"]["loss_normalizer"]  # a detector buffer
    for key in ("model", "model_ema"):
        assert a[key].keys() == b[key].keys()
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"
    torch.testing.assert_close(a["optimizer"]["state"], b["optimizer"]["state"], rtol=0, atol=0)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]


@contextlib.contextmanager
def one_thread():
    """Tiny models run 100x faster on one thread than on two busy cores (OpenMP barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def in_process(monkeypatch):
    """As conftest's, pinned to one thread: tiny models run far slower on 2 threads of a busy machine."""
    with process_state_restored(monkeypatch, threads=1):
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_tiny_config(tmp_path_factory.mktemp("resume"))


def _reference_run(workspace: Path) -> Path:
    """The uninterrupted run (in-process; the module-scoped fixtures can't use `in_process`)."""
    import train

    root = logging.getLogger()
    handlers = list(root.handlers)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with one_thread():
            assert train.main([str(workspace), "--name", "full", "--device", "cpu"]) == 0
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        torch.use_deterministic_algorithms(deterministic)
    return workspace.parent / "runs" / "tiny_full"


@pytest.fixture(scope="module")
def reference(workspace):
    return _reference_run(workspace)


def test_uninterrupted_run_keeps_the_right_files(reference):
    names = sorted(p.name for p in reference.iterdir() if p.suffix == ".pth")
    # iterations 2 and 6 are mid-epoch; 4 and 8 are epoch ends (epoch files instead)
    assert names == [
        "epoch_001.pth", "epoch_002.pth", "iter_0000002.pth", "iter_0000006.pth", "last.pth"
    ]  # fmt: skip
    mid = torch.load(reference / "iter_0000006.pth", weights_only=True)
    assert (mid["epoch"], mid["epoch_iter"], mid["iteration"]) == (1, 2, 6)
    assert len(mid["rng_per_rank"]) == 1


_KILLER = """
import os, signal, sys
import torch
torch.set_num_threads({threads})
sys.path.insert(0, {repo!r})
import libs.engine.train_loop as tl
import train

real_step = tl.train_step

def step(state, *args, **kwargs):
    out = real_step(state, *args, **kwargs)
    if state.iteration == {kill_at}:  # after the optimizer step, before any checkpoint of it
        os.kill(os.getpid(), signal.SIGKILL)
    return out

tl.train_step = step
sys.exit(train.main(sys.argv[1:]))
"""


def _kill_and_resume(workspace: Path, reference: Path, kill_at: int, name: str) -> None:
    import train

    script = _KILLER.format(threads=1, repo=str(REPO), kill_at=kill_at)
    out = subprocess.run(
        [sys.executable, "-c", script, str(workspace), "--name", name, "--device", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    run = workspace.parent / "runs" / f"tiny_{name}"
    assert train.main([str(workspace), "--resume", str(run), "--device", "cpu"]) == 0
    assert_same_checkpoint(reference / "last.pth", run / "last.pth")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads((reference / "metrics.json").read_text()), f"killed at {kill_at}"


@pytest.mark.parametrize("seed", range(10))  # the issue: 10 out of 10 seeds
def test_sigkill_anywhere_then_resume_is_bit_identical(seed, workspace, reference, in_process):
    kill_at = random.Random(seed).randint(3, TOTAL_ITERS - 1)  # a checkpoint exists (iter 2)
    _kill_and_resume(workspace, reference, kill_at, f"killed{seed}")


def test_sigkill_with_loader_workers(tmp_path, in_process):
    """Worker processes are re-created and seeded per epoch, so their crops replay exactly."""
    workspace = make_tiny_config(tmp_path, loader={"batch_size": 2, "num_workers": 2})
    _kill_and_resume(workspace, _reference_run(workspace), kill_at=3, name="workers")


def test_ctrl_c_writes_a_resumable_checkpoint(
    workspace, reference, in_process, monkeypatch, capsys
):
    import libs.engine.train_loop as tl
    import train

    real_step = tl.train_step

    def step(state, *args, **kwargs):
        out = real_step(state, *args, **kwargs)
        if state.iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag
        return out

    monkeypatch.setattr(tl, "train_step", step)
    assert train.main([str(workspace), "--name", "ctrlc", "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    run = workspace.parent / "runs" / "tiny_ctrlc"
    assert f"--resume {run / 'last.pth'}" in err and "epoch 1 after 3 of its 4 iterations" in err
    assert torch.load(run / "last.pth", weights_only=True)["iteration"] == 3
    monkeypatch.setattr(tl, "train_step", real_step)
    assert train.main([str(workspace), "--resume", str(run / "last.pth"), "--device", "cpu"]) == 0
    assert_same_checkpoint(reference / "last.pth", run / "last.pth")


def test_non_finite_loss_keeps_the_last_good_checkpoint(workspace, in_process, monkeypatch, capsys):
    import libs.engine.train_loop as tl
    import train

    real_step = tl.train_step
    saved = {}

    def step(state, *args, **kwargs):
        if state.iteration == 5:  # 2nd step of epoch 2; last.pth = the epoch-1 checkpoint
            saved["bytes"] = (run / "last.pth").read_bytes()
            state.model.loss_normalizer.fill_(float("nan"))  # NaN losses, finite predictions
        return real_step(state, *args, **kwargs)

    run = workspace.parent / "runs" / "tiny_nan"
    monkeypatch.setattr(tl, "train_step", step)
    assert train.main([str(workspace), "--name", "nan", "--device", "cpu"]) == 1
    assert "non-finite training loss at epoch 2 iteration 1" in capsys.readouterr().err
    assert (run / "last.pth").read_bytes() == saved["bytes"]
    assert not (run / "iter_0000006.pth").exists()


def test_resume_from_a_checkpoint_with_the_old_top_level_normaliser(reference, tmp_path, in_process):  # noqa: F811
    """Checkpoints written before the normaliser became a detector buffer kept it as a float."""
    from libs.core.config import load_config
    from libs.engine.resume import restore_training_state
    from libs.engine.train_loop import _build_state
    from libs.modeling import build_model

    ckpt = torch.load(reference / "epoch_001.pth", weights_only=True)
    for key in ("model", "model_ema"):
        del ckpt[key]["loss_normalizer"]
    ckpt["loss_normalizer"] = 42.5
    old = tmp_path / "old.pth"
    torch.save(ckpt, old)
    cfg = load_config(str(reference / "config.yaml"))
    state = _build_state(cfg, build_model(cfg.model, cfg.train, cfg.test), 4, torch.device("cpu"))
    restore_training_state(old, state, cfg)
    assert float(state.model.loss_normalizer) == 42.5 and state.epoch == 1
