"""Config schema: strict merge, overrides, derived fields, every shipped YAML loads."""
import glob
import os

import pytest
import yaml

from libs.core.config import (
    Config,
    ConfigError,
    config_to_dict,
    load_config,
    window_sizes,
    write_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.num_classes == cfg.dataset.num_classes
    assert len(cfg.model.regression_range) == cfg.model.arch[2] + 1


def test_unknown_key_names_key_and_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.embd_dm'; did you mean 'model.embd_dim'"):
        load_config(data={"model": {"embd_dm": 3}})
    with pytest.raises(ConfigError, match=r"'modle'.*'model'"):
        load_config(data={"modle": {}})


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match=r"model.embd_dim: expected an integer"):
        load_config(data={"model": {"embd_dim": "wide"}})
    with pytest.raises(ConfigError, match=r"opt.learning_rate: expected a number"):
        load_config(data={"opt": {"learning_rate": "fast"}})
    with pytest.raises(ConfigError, match=r"dataset.crop_ratio"):
        load_config(data={"dataset": {"crop_ratio": [0.9]}})


def test_overrides_are_typed_and_strict():
    cfg = load_config(data={}, overrides=["model.embd_dim=256", "model.fpn_dim=256", "opt.epochs=3",
                                          "model.block.type=dbm", "model.block.args.expand=1",
                                          "dataset.crop_ratio=[0.9, 1.0]"])
    assert cfg.model.embd_dim == 256 and cfg.opt.epochs == 3
    assert cfg.model.block.type == "dbm" and cfg.model.block.args == {"expand": 1}
    assert cfg.dataset.crop_ratio == (0.9, 1.0)
    with pytest.raises(ConfigError, match="opt.epoch"):
        load_config(data={}, overrides=["opt.epoch=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(data={}, overrides=["opt.epochs"])


def test_finalize_derives_model_fields_and_checks_levels():
    cfg = load_config(data={"dataset": {"input_dim": 3200, "num_classes": 20, "max_seq_len": 2304}})
    assert (cfg.model.input_dim, cfg.model.num_classes, cfg.model.max_seq_len) == (3200, 20, 2304)
    with pytest.raises(ConfigError, match="regression_range has 6 entries but model.arch gives 8"):
        load_config(data={"model": {"arch": [2, 2, 7]}})
    with pytest.raises(ConfigError, match="nms_method"):
        load_config(data={"test": {"nms_method": "gaussian"}})


def test_window_sizes_int_and_list():
    assert window_sizes(load_config(data={"model": {"n_mha_win_size": 19}}).model) == [19] * 6
    cfg = load_config(data={"model": {"n_mha_win_size": [7, 7, 7, 7, 7, -1]}})
    assert window_sizes(cfg.model) == [7, 7, 7, 7, 7, -1]


def config_from_dict(data: dict) -> Config:
    """A stored config (a checkpoint's, a run folder's) read back: the derived fields it carries
    are recomputed by load_config."""
    return load_config(data=data, path=data.get("config_path") or None)


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = load_config(data={"model": {"block": {"type": "dbm", "args": {"d_conv": 4}}}, "dataset": {"num_classes": 5}})
    assert config_from_dict(config_to_dict(cfg)) == cfg
    path = tmp_path / "config.yaml"
    write_config(cfg, str(path))
    assert load_config(str(path)) == load_config(data=yaml.safe_load(path.read_text()), path=str(path))
    assert isinstance(Config(), Config)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(str(bad))
