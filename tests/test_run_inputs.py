"""Every input of train.py is checked before its run folder exists (issue 15 item 10): a bad one
leaves no empty folder behind, a validation video longer than the model's point buffer is an
error at the start instead of after the whole training, and the early log lines still reach
log.txt. Also: which epoch best-on-val keeps on a tie."""

import json
from pathlib import Path

import pytest
import yaml

from tests.test_resume_exact import make_tiny_config


def _train(argv, capsys):
    import train

    status = train.main(list(map(str, argv)))
    return status, capsys.readouterr().err


def test_a_missing_annotation_file_leaves_no_run_folder(tmp_path, in_process, capsys):
    config = make_tiny_config(tmp_path, num_train=2)
    cfg = yaml.safe_load(config.read_text())
    cfg["dataset"]["json_file"] = str(tmp_path / "nope.json")
    config.write_text(yaml.safe_dump(cfg))
    status, err = _train([config, "--name", "x", "--device", "cpu"], capsys)
    assert status == 2 and "nope.json" in err.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()


def test_a_model_config_error_leaves_no_run_folder(tmp_path, in_process, capsys):
    config = make_tiny_config(tmp_path, num_train=2)
    status, err = _train([config, "--name", "x", "--device", "cpu", "--opts",
                          "dataset.max_seq_len=100"], capsys)  # fmt: skip
    assert status == 2 and "max_seq_len" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_validation_video_longer_than_the_buffer_is_refused_before_training(tmp_path, in_process, capsys):
    from libs.commands.make_synthetic import make_synthetic

    config = make_tiny_config(tmp_path, num_train=2)
    anno = tmp_path / "anno.json"
    data = json.loads(anno.read_text())
    data["database"]["v3"]["duration"] = 300.0  # 1124 features; buffer 128 x 6 = 768
    anno.write_text(json.dumps(data))
    (tmp_path / "feats" / "v3.pt").unlink()
    make_synthetic(str(anno), str(tmp_path / "feats"), dim=8, feat_stride=8, num_frames=16,
                   ext=".pt", seed=0)  # fmt: skip
    status, err = _train([config, "--name", "x", "--device", "cpu"], capsys)
    line = err.strip().splitlines()[-1]
    assert status == 2 and "validation video 'v3' has 1124 features" in line, err[-2000:]
    assert "more than the model's point buffer of 768 (dataset.max_seq_len 128 x model.max_buffer_len_factor 6)" in line
    assert not (tmp_path / "runs").exists()
    # raising the factor as the message says makes it fit
    factor = int(line.split("model.max_buffer_len_factor=")[1].split(",")[0])
    assert factor == 9
    from libs.core.config import load_config
    from libs.datasets import build_dataset
    from libs.engine.validation import check_val_lengths

    cfg = load_config(str(config), [f"model.max_buffer_len_factor={factor}"])
    check_val_lengths(cfg, build_dataset(cfg.dataset, "val", is_training=False), 8)


def test_the_lines_logged_before_the_run_folder_reach_log_txt(tmp_path, in_process, capsys):
    config = make_tiny_config(tmp_path, num_train=2, opt={"epochs": 0, "warmup_epochs": 1})
    status, err = _train([config, "--name", "x", "--device", "cpu"], capsys)
    assert status == 0, err[-2000:]
    log = (tmp_path / "runs" / "tiny_x" / "log.txt").read_text()
    assert log.index("built ActionDetector") < log.index("kernels:")
    assert log.count("built ActionDetector") == 1


def test_best_on_val_keeps_the_earlier_epoch_on_a_tie():
    from libs.engine.val_history import best_record

    records = [{"epoch": e, "average_mAP": m} for e, m in ((1, 0.2), (2, 0.5), (3, 0.5), (4, 0.4))]
    assert best_record(records)["epoch"] == 2
