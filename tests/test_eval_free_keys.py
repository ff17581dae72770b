"""What eval.py / tools/infer.py may change although the checkpoint stores the training config:
the point buffer length (it holds no weights: a longer video needs a longer buffer) and a
default fps where the run had none; a video too long for the buffer is named with the factor."""
import torch

from libs.core.config import config_to_dict, load_config
from libs.engine.stored_config import apply_stored_geometry
from tests.test_infer import restored_process_state, tiny_run


def _configs(run, *opts):
    stored = config_to_dict(load_config(str(run["config"])))
    return stored, load_config(str(run["config"]), list(opts))


def test_buffer_factor_and_a_missing_default_fps_may_be_given(tmp_path_factory):
    run = tiny_run(tmp_path_factory)
    stored, cfg = _configs(run, "model.max_buffer_len_factor=12", "dataset.default_fps=25")
    assert stored["dataset"]["default_fps"] is None
    out = apply_stored_geometry(cfg, stored, "ckpt.pth",
                                ["model.max_buffer_len_factor=12", "dataset.default_fps=25"])
    assert out.model.max_buffer_len_factor == 12 and out.dataset.default_fps == 25


def test_a_stored_default_fps_still_comes_from_the_checkpoint(tmp_path_factory):
    import pytest

    from libs.core.config_merge import ConfigError

    run = tiny_run(tmp_path_factory)
    stored, _ = _configs(run)
    stored["dataset"]["default_fps"] = 30.0  # the run overrode the annotations' fps
    _, cfg = _configs(run, "dataset.default_fps=25")
    with pytest.raises(ConfigError, match="dataset.default_fps"):
        apply_stored_geometry(cfg, stored, "ckpt.pth", ["dataset.default_fps=25"])


def test_a_video_longer_than_the_buffer_is_named_with_the_factor(tmp_path_factory, monkeypatch,
                                                                 capsys):
    from libs.commands import infer

    run = tiny_run(tmp_path_factory)
    cfg = load_config(str(run["config"]))
    length = int(cfg.dataset.max_seq_len * cfg.model.max_buffer_len_factor) + 64
    feats = tmp_path_factory.mktemp("long") / "very_long.pt"
    torch.save(torch.randn(length, cfg.dataset.input_dim), feats)
    argv = [str(run["config"]), str(run["ckpt"]), str(feats), "--default-fps", "30",
            "--device", "cpu", "--out", str(feats.parent / "det.json")]
    with restored_process_state(monkeypatch):
        assert infer.main(argv) == 2
        err = capsys.readouterr().err
        assert "video 'very_long'" in err and "multiply model.max_buffer_len_factor by at least" in err
        factor = 2 * cfg.model.max_buffer_len_factor
        assert infer.main(argv + ["--opts", f"model.max_buffer_len_factor={factor}"]) == 0
