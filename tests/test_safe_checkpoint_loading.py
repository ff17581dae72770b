"""Checkpoints are data, never code: ours and the published `.pth.tar` load with
`torch.load(weights_only=True)`; anything needing full unpickling is refused before a single
object of it is built, unless the user opts in explicitly."""

from __future__ import annotations

import pytest
import torch

from tests.bad_input_workspace import CLI_ERRORS, Workspace


# ====================================================================== safe loading
# Checkpoints are data, never code: ours and the published `.pth.tar` hold only tensors and plain
# containers, so `torch.load(weights_only=True)` reads them; anything needing full unpickling is
# refused before a single object of it is built.
TRIPPED: list = []


def _trip() -> str:
    TRIPPED.append("code ran")
    return "tripped"


class Tripwire:
    """Unpickling this calls `_trip`: proof of whether a loader ran code from the file."""

    def __reduce__(self):
        return (_trip, ())


def test_our_training_checkpoints_load_weights_only(tmp_path, capsys, in_process):
    import train
    from libs.engine.checkpoint import load_model_weights

    ws = Workspace(tmp_path)
    ws.cfg["opt"]["ckpt_freq"] = 1
    assert train.main(ws.train()) == 0, capsys.readouterr().err[-3000:]
    run = tmp_path / "runs" / "tiny_case"
    files = sorted(run.glob("*.pth"))  # every checkpoint kind the engine writes
    assert {"epoch_001.pth", "epoch_002.pth", "last.pth"} <= {p.name for p in files}
    for path in files:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert {"model", "model_ema", "optimizer", "scheduler", "config", "rng"} <= set(state)
        weights, meta = load_model_weights(path)
        assert meta["format"] == "ours" and meta["weights"] == "model_ema" and weights


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_published_pth_tar_loads_weights_only(tmp_path, legacy, capsys, in_process):
    """The layout of ActionFormer / video-mamba-suite `save_checkpoint`, DataParallel prefixes,
    real optimizer and scheduler state; both torch.save formats (zip since torch 1.6, legacy)."""
    from libs.core.config import load_config
    from libs.engine.checkpoint import load_model_weights, load_weights
    from libs.modeling import build_model

    ws = Workspace(tmp_path)
    cfg = load_config(ws.config())
    model = build_model(cfg.model, cfg.train, cfg.test)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    for p in model.parameters():  # one step, so the optimizer state holds tensors (exp_avg, step)
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    published = {
        "epoch": 35,
        "state_dict": prefixed,
        "scheduler": scheduler.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state_dict_ema": prefixed,
    }
    path = tmp_path / "epoch_035.pth.tar"
    torch.save(published, path, _use_new_zipfile_serialization=not legacy)

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert set(loaded) == set(published) and loaded["epoch"] == 35
    weights, meta = load_model_weights(path)
    assert meta == {"format": "published", "weights": "state_dict_ema", "epoch": 35}
    fresh = build_model(cfg.model, cfg.train, cfg.test)
    load_weights(fresh, weights, source=str(path))
    torch.testing.assert_close(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    if not legacy:  # and the CLI evaluates it
        import eval as eval_cli

        assert eval_cli.main(ws.eval(str(path))) == 0, capsys.readouterr().err[-3000:]


def test_checkpoint_needing_full_unpickling_is_refused_without_running_code(tmp_path):
    from libs.engine.checkpoint import load_checkpoint

    path = tmp_path / "unsafe.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": Tripwire()}, path)
    TRIPPED.clear()
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, CLI_ERRORS)  # train.py / eval.py print it as `error: ...`
    message = str(info.value)
    assert str(path) in message and "weights_only" in message, message
    assert TRIPPED == []  # refused before anything in the file was called
    torch.load(path, weights_only=False)  # the trip wire works: full unpickling runs code
    assert TRIPPED == ["code ran"]
    TRIPPED.clear()


def test_unsafe_opt_in_is_explicit_and_the_refusal_says_how(tmp_path):
    from libs.engine.checkpoint import load_checkpoint

    path = tmp_path / "unsafe.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": Tripwire()}, path)
    TRIPPED.clear()
    with pytest.raises(ValueError, match="allow_unsafe") as info:
        load_checkpoint(path)  # default: refused, and the message names the way out
    assert "trust" in str(info.value) and TRIPPED == []
    state = load_checkpoint(path, allow_unsafe=True)
    assert state["hook"] == "tripped" and TRIPPED == ["code ran"]
    TRIPPED.clear()
