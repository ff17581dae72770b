"""`_base_` config inheritance, the paper configs' resolved values, and describe_schedule."""
import dataclasses
import glob
import json
import os

import pytest
import yaml

from libs.core.config import Config, describe_schedule, load_config, write_config
from libs.core.config_merge import MAX_BASE_DEPTH, ConfigError, deep_merge
from libs.engine.scheduler import total_epochs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOLVED = os.path.join(REPO, "tests", "data", "paper_configs_resolved")


def _yaml(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("snapshot", sorted(glob.glob(os.path.join(RESOLVED, "*.json"))),
                         ids=lambda p: os.path.basename(p)[:-5])
def test_paper_configs_resolve_to_the_snapshot(snapshot):
    """The 12 paper configs (per-dataset base + per-block delta) resolve to the values the flat
    files had before inheritance (snapshots taken from those files)."""
    name = os.path.basename(snapshot)[:-5]
    path = os.path.join(REPO, "configs", f"{name}.yaml")
    cfg = json.loads(json.dumps(dataclasses.asdict(load_config(path))))
    cfg.pop("config_path")
    with open(snapshot) as f:
        expected = json.load(f)
    defaults = json.loads(json.dumps(dataclasses.asdict(Config())))
    assert _without_keys_added_later(cfg, expected, defaults) == expected


def _without_keys_added_later(cfg: dict, snapshot: dict, defaults: dict) -> dict:
    """``cfg`` less the keys the snapshot predates (e.g. ``threads``); each must hold its
    schema default, so a paper config cannot set a new key unnoticed."""
    out = {}
    for key, value in cfg.items():
        if key not in snapshot:
            assert value == defaults[key], f"new key {key!r} is set ({value!r}), not its default"
        elif isinstance(value, dict) and isinstance(snapshot[key], dict):
            out[key] = _without_keys_added_later(value, snapshot[key], defaults.get(key) or {})
        else:
            out[key] = value
    return out


def test_twelve_snapshots_and_bases_not_runnable_configs():
    assert len(glob.glob(os.path.join(RESOLVED, "*.json"))) == 12
    top = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs", "*.yaml"))}
    assert not any(name.startswith("_") for name in top)  # bases live in configs/_base_/


def test_deep_merge_dicts_merge_lists_replace():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    child = {"a": {"y": [3]}, "c": 2}
    assert deep_merge(base, child) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # inputs untouched


def test_base_relative_to_including_file_and_list_order(tmp_path):
    _yaml(tmp_path / "b" / "one.yaml", {"opt": {"epochs": 3, "warmup_epochs": 1}, "seed": 1})
    _yaml(tmp_path / "b" / "two.yaml", {"_base_": "one.yaml", "opt": {"epochs": 4}})
    _yaml(tmp_path / "b" / "three.yaml", {"seed": 3, "loader": {"num_workers": 0}})
    child = _yaml(tmp_path / "c" / "run.yaml", {
        "_base_": ["../b/two.yaml", "../b/three.yaml"], "loader": {"batch_size": 5}})
    cfg = load_config(child)
    assert (cfg.opt.epochs, cfg.opt.warmup_epochs, cfg.seed) == (4, 1, 3)  # later wins, child over all
    assert (cfg.loader.batch_size, cfg.loader.num_workers) == (5, 0)
    assert cfg.config_path == child


def test_child_overrides_base_and_overrides_apply_last(tmp_path):
    _yaml(tmp_path / "base.yaml", {"model": {"block": {"type": "dbm", "args": {"expand": 1, "d_conv": 4}}}})
    child = _yaml(tmp_path / "run.yaml", {"_base_": "base.yaml", "model": {"block": {"args": {"expand": 2}}}})
    cfg = load_config(child, ["model.block.args.d_conv=3"])
    assert cfg.model.block.type == "dbm"
    assert cfg.model.block.args == {"expand": 2, "d_conv": 3}


def test_written_run_config_is_fully_resolved(tmp_path):
    _yaml(tmp_path / "base.yaml", {"opt": {"epochs": 7}})
    child = _yaml(tmp_path / "run.yaml", {"_base_": "base.yaml", "seed": 5})
    out = tmp_path / "config.yaml"
    write_config(load_config(child), out)
    stored = yaml.safe_load(out.read_text())
    assert "_base_" not in stored and stored["opt"]["epochs"] == 7 and stored["seed"] == 5
    assert dataclasses.asdict(load_config(str(out))) == {**dataclasses.asdict(load_config(child)),
                                                         "config_path": str(out)}


def test_cycle_refused_naming_the_chain(tmp_path):
    _yaml(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _yaml(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match=r"_base_ cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(str(tmp_path / "a.yaml"))


def test_self_include_refused(tmp_path):
    path = _yaml(tmp_path / "a.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(path)


def test_deep_chain_refused(tmp_path):
    n = MAX_BASE_DEPTH + 2
    for i in range(n):
        _yaml(tmp_path / f"c{i}.yaml", {"_base_": f"c{i + 1}.yaml"} if i < n - 1 else {"seed": 1})
    with pytest.raises(ConfigError, match=rf"chain deeper than {MAX_BASE_DEPTH} files: .*c0\.yaml"):
        load_config(str(tmp_path / "c0.yaml"))


def test_chain_at_the_limit_loads(tmp_path):
    n = MAX_BASE_DEPTH
    for i in range(n):
        _yaml(tmp_path / f"c{i}.yaml", {"_base_": f"c{i + 1}.yaml"} if i < n - 1 else {"seed": 9})
    assert load_config(str(tmp_path / "c0.yaml")).seed == 9


@pytest.mark.parametrize("bad,match", [
    ("missing.yaml", "_base_ file not found: missing.yaml"),
    (3, "must be a file name or a list"),
    ([], None),
])
def test_bad_base_values(tmp_path, bad, match):
    path = _yaml(tmp_path / "a.yaml", {"_base_": bad, "seed": 2})
    if match is None:  # an empty list is simply no base
        assert load_config(path).seed == 2
    else:
        with pytest.raises(ConfigError, match=match):
            load_config(path)


def test_base_that_is_not_a_mapping(tmp_path):
    (tmp_path / "base.yaml").write_text("- 1\n- 2\n")
    path = _yaml(tmp_path / "a.yaml", {"_base_": "base.yaml"})
    with pytest.raises(ConfigError, match="base.yaml: the top level must be a mapping"):
        load_config(path)


def test_base_file_is_checked_strictly(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 1\nseed: 2\n")
    path = _yaml(tmp_path / "a.yaml", {"_base_": "base.yaml"})
    with pytest.raises(ConfigError, match="base.yaml line 2: duplicate key 'seed'"):
        load_config(path)


@pytest.mark.parametrize("opt,text", [
    ({"epochs": 3, "warmup": True, "warmup_epochs": 5}, "3 epochs + 5 warmup = 8 epochs"),
    ({"epochs": 30, "warmup": False, "warmup_epochs": 5}, "30 epochs (no warmup)"),
    ({"epochs": 4, "warmup": True, "warmup_epochs": 0}, "4 epochs (no warmup)"),
])
def test_describe_schedule_matches_the_scheduler(opt, text):
    cfg = load_config(data={"opt": opt})
    assert describe_schedule(cfg) == text
    assert text.endswith(f"{total_epochs(cfg.opt)} epochs") or text.startswith(f"{total_epochs(cfg.opt)} epochs")


def test_describe_schedule_default_config():
    assert describe_schedule(Config()) == "30 epochs + 5 warmup = 35 epochs"
