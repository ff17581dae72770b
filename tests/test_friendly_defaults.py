"""Defaults that suit a small dataset on a CPU: every epoch logs, workers fit the cores, and the
custom-dataset template is small."""
import logging

import pytest

from libs.core.config import load_config
from libs.engine.train_loop import _log_due
from libs.utils import workers


@pytest.mark.parametrize("steps", [1, 2, 3, 9, 10, 11, 25, 50])
@pytest.mark.parametrize("print_freq", [1, 2, 10, 25])
def test_every_epoch_logs_at_least_once(steps, print_freq):
    logged = [i for i in range(steps) if _log_due(i, steps, print_freq)]
    assert logged, f"{steps} steps, print_freq {print_freq}: nothing reaches TensorBoard"
    regular = [i for i in range(1, steps) if i % print_freq == 0]
    assert set(regular) <= set(logged) and len(logged) <= len(regular) + 1


def test_print_freq_zero_logs_nothing():
    assert not any(_log_due(i, 3, 0) for i in range(3))


def test_num_workers_clamped_to_the_cores(monkeypatch, caplog):
    monkeypatch.setattr(workers, "usable_cores", lambda: (2, "2 CPUs in the affinity mask"))
    monkeypatch.setattr(workers, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=workers.__name__):
        assert workers.clamp_workers(4) == 2
        assert "loader.num_workers=4 but this process may use 2 cores" in caplog.text
        caplog.clear()
        assert workers.clamp_workers(4) == 2  # train and val loaders: one warning, not one each
        assert workers.clamp_workers(2) == 2 and workers.clamp_workers(0) == 0
        assert not caplog.text
        assert workers.clamp_workers(5) == 2
        assert "loader.num_workers=5" in caplog.text


def test_build_loader_uses_the_clamp(monkeypatch):
    from libs import datasets

    monkeypatch.setattr(workers, "usable_cores", lambda: (1, "test"))
    loader = datasets.build_loader([], batch_size=1, num_workers=3, is_training=False,
                                   max_seq_len=16, size_divisor=1)
    assert loader.num_workers == 1


def test_template_custom_is_small_and_fits_a_cpu():
    from libs.modeling import build_model
    from libs.utils.threads import usable_cores

    cfg = load_config("configs/template_custom.yaml")
    model = build_model(cfg.model, cfg.train, cfg.test)
    params = sum(p.numel() for p in model.parameters())
    assert params < 2_000_000, f"{params / 1e6:.1f} M parameters: not a small-data model"
    assert cfg.loader.num_workers <= usable_cores()[0]
    assert cfg.dataset.name == "activitynet_format"
    text = open("configs/template_custom.yaml").read()
    assert "MEASURED" not in text and "measured" in text  # the header states a measured time
