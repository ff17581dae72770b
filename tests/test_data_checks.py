"""Training set-ups checked before the run folder exists (libs/engine/data_checks.py): a batch
larger than the training split is an error that leaves no folder; a class-agnostic model scored
against classes, and training on the evaluation split, are warned about."""
import logging

import pytest

from libs.core.config import load_config
from libs.engine.data_checks import check_batches, warn_setup
from tests.conftest import process_state_restored
from tests.test_resume_exact import make_tiny_config


def test_batch_larger_than_the_training_split_is_one_error_and_no_folder(tmp_path, capsys):
    import train

    config = make_tiny_config(tmp_path, num_train=4, loader={"batch_size": 8, "num_workers": 0})
    with pytest.MonkeyPatch.context() as mp, process_state_restored(mp, threads=1):
        assert train.main([str(config), "--name", "big", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "has 4 videos, fewer than loader.batch_size 8" in err and err.count("error: ") == 1
    assert "set loader.batch_size to at most 4" in err
    assert not (tmp_path / "runs").exists()  # checked before the run folder


def test_check_batches_passes_a_split_that_fills_a_batch(tmp_path):
    cfg = load_config(str(make_tiny_config(tmp_path, num_train=4)), ["loader.batch_size=4"])
    check_batches(cfg, 4)


def test_class_agnostic_against_classes_and_train_val_overlap_warn(tmp_path, caplog):
    path = str(make_tiny_config(tmp_path, num_train=4))
    with caplog.at_level(logging.WARNING, logger="libs.engine.data_checks"):
        warn_setup(load_config(path), 2)
        assert not caplog.text  # the tiny config: 2 classes, training vs validation
        warn_setup(load_config(path, ["dataset.num_classes=1"]), 2)
        assert "num_classes is 1 (class-agnostic) but the annotations have 2 classes" in caplog.text
        caplog.clear()
        warn_setup(load_config(path, ["dataset.num_classes=1", "test.ext_score_file=s.json"]), 2)
        assert not caplog.text  # external class scores: the ActivityNet set-up
        warn_setup(load_config(path, ["dataset.train_split=[training, Validation]"]), 2)
        assert "includes the evaluation split" in caplog.text and "validation" in caplog.text
