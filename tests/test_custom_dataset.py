"""configs/custom_example.yaml: a user dataset set up by config alone (`activitynet_format`).

Synthetic features for data/custom_example/annotations.json (custom subsets "train" / "test",
file names kitchen_<id>_r21d.npy) are written to tmp_path; the config as shipped then trains for
one epoch and evaluates (train.py and eval.py in-process).
"""

import importlib
import json
from pathlib import Path

import pytest

from tests.test_infer import restored_process_state

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "custom_example.yaml"


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """The synthetic features the config's header comment tells users to make, in tmp_path."""
    from libs.core.config import load_config
    from libs.commands.make_synthetic import make_synthetic

    d = load_config(str(CONFIG)).dataset
    out = tmp_path_factory.mktemp("custom") / "feats"
    make_synthetic(
        str(REPO / d.json_file),
        str(out),
        dim=d.input_dim,
        feat_stride=d.feat_stride,
        num_frames=d.num_frames,
        file_prefix=d.file_prefix,
        feature_type=d.feature_type,
        ext=d.file_ext,
        seed=0,
    )
    return out


def test_annotations_and_config_agree(features):
    from libs.core.config import load_config
    from libs.datasets import build_dataset

    cfg = load_config(str(CONFIG), [f"dataset.feat_folder={features}"])
    database = json.loads((REPO / cfg.dataset.json_file).read_text())["database"]
    assert 15 <= len(database) <= 25
    assert (cfg.dataset.file_prefix, cfg.dataset.feature_type, cfg.dataset.file_ext) == (
        "kitchen_",
        "_r21d",
        ".npy",
    )
    assert (features / "kitchen_cam01_0000_r21d.npy").is_file()
    train = build_dataset(cfg.dataset, "train", is_training=True)
    test = build_dataset(cfg.dataset, "val", is_training=False)
    assert (len(train), len(test)) == (14, 6)
    assert sorted(train.label_dict.values()) == list(range(cfg.dataset.num_classes))
    sample = test[0]
    assert sample.feats.shape[0] == cfg.dataset.input_dim and sample.segments is not None


def test_trains_one_epoch_and_evaluates(features, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository
    opts = [
        "opt.epochs=1",
        "opt.warmup_epochs=0",
        f"dataset.feat_folder={features}",
        f"output_folder={tmp_path}",
    ]
    with restored_process_state(monkeypatch):
        train = importlib.import_module("train")
        assert train.main([str(CONFIG), "--name", "t", "--device", "cpu", "--opts", *opts]) == 0
    run = tmp_path / "custom_example_t"
    assert (run / "last.pth").is_file() and (run / "metrics.json").is_file()

    with restored_process_state(monkeypatch):
        eval_main = importlib.import_module("eval").main
        assert eval_main([str(CONFIG), str(run), "--device", "cpu", "--opts", *opts[2:]]) == 0
    metrics = json.loads((run / "metrics_eval.json").read_text())
    assert metrics["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7] and len(metrics["mAP"]) == 5
    trained = json.loads((run / "metrics.json").read_text())
    # train.py's metrics.json also says which epoch it reports and the last / best ones
    assert set(trained) - set(metrics) == {"reported", "last", "best"}
    assert metrics == {k: v for k, v in trained.items() if k in metrics}
    results = json.loads((run / "results_eval.json").read_text())["results"]
    database = json.loads((REPO / "data/custom_example/annotations.json").read_text())["database"]
    assert results and set(results) <= {v for v, x in database.items() if x["subset"] == "test"}
    labels = {r["label"] for entries in results.values() for r in entries}
    assert labels and labels <= {"open_door", "pick_up_box", "wave_hand", "sit_down"}
    assert "mAP (%)" in capsys.readouterr().out
