"""libs.core.safe_io: hostile YAML / JSON inputs fail fast with one clear error."""
import json
import os
import time

import pytest

from libs.core.annotations import load_json_source
from libs.core.config import load_config
from libs.core.config_merge import ConfigError
from libs.core.safe_io import MAX_DEPTH, UnsafeInputError, check_regular_file, load_yaml, read_json

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_yaml_alias_bomb_fails_fast(tmp_path):
    path = _write(tmp_path, "bomb.yaml", "model:\n  block:\n    args:\n" + "".join(
        "      " + line + "\n" for line in BILLION_LAUGHS.splitlines()))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml line 4: YAML anchors and aliases"):
        load_config(path)
    assert time.perf_counter() - start < 2.0


def test_yaml_recursive_alias_refused(tmp_path):
    path = _write(tmp_path, "rec.yaml", "a: &x [*x]\n")
    with pytest.raises(UnsafeInputError, match="anchors and aliases"):
        load_yaml(path)


def test_yaml_alias_alone_refused(tmp_path):
    path = _write(tmp_path, "alias.yaml", "a: 1\nb: *nothing\n")
    with pytest.raises(UnsafeInputError, match=r"line 2: YAML anchors and aliases"):
        load_yaml(path)


@pytest.mark.parametrize("text,line", [
    ("opt:\n  epochs: 2\nopt:\n  epochs: 30\n", 3),  # top level
    ("opt:\n  epochs: 2\n  epochs: 30\n", 3),  # nested
    ("model:\n  block:\n    args: {n_head: 4, n_head: 8}\n", 3),  # flow mapping, deepest level
])
def test_yaml_duplicate_keys_refused(tmp_path, text, line):
    path = _write(tmp_path, "dup.yaml", text)
    with pytest.raises(ConfigError, match=rf"dup.yaml line {line}: duplicate key '\w+' \(first at line \d+\)"):
        load_config(path)


def test_yaml_deep_nesting_refused(tmp_path):
    path = _write(tmp_path, "deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=f"nesting deeper than {MAX_DEPTH}"):
        load_config(path)


def test_yaml_python_tag_still_refused(tmp_path):
    path = _write(tmp_path, "tag.yaml", "a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_yaml_plain_config_loads(tmp_path):
    path = _write(tmp_path, "ok.yaml", "opt: {epochs: 2}\nmodel:\n  block: {type: dbm, args: {expand: 1}}\n")
    cfg = load_config(path)
    assert cfg.opt.epochs == 2 and cfg.model.block.args == {"expand": 1}


def test_json_duplicate_key_refused(tmp_path):
    path = _write(tmp_path, "gt.json", '{"database": {"v": {}, "v": {}}}')
    with pytest.raises(UnsafeInputError, match="key 'v' twice"):
        read_json(path, "ground truth")


def test_json_deep_nesting_is_a_clear_error(tmp_path):
    path = _write(tmp_path, "deep.json", "[" * 200000 + "]" * 200000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_json_source(path, "results")


def test_json_plain_file_loads(tmp_path):
    path = _write(tmp_path, "r.json", json.dumps({"results": {"v": []}}))
    assert read_json(path, "results") == {"results": {"v": []}}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_refused_without_blocking(tmp_path):
    fifo = str(tmp_path / "r.json")
    os.mkfifo(fifo)
    with pytest.raises(UnsafeInputError, match="FIFO"):
        read_json(fifo, "results")
    with pytest.raises(ConfigError, match="FIFO"):
        load_config(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_refused():
    with pytest.raises(UnsafeInputError, match="device or special file"):
        read_json("/dev/zero", "annotation")


def test_folder_and_missing_refused(tmp_path):
    with pytest.raises(UnsafeInputError, match="is a folder"):
        check_regular_file(tmp_path, "annotation")
    with pytest.raises(UnsafeInputError, match="cannot read annotation file"):
        check_regular_file(tmp_path / "none.json", "annotation")


def test_override_value_with_alias_or_deep_nesting_refused(tmp_path):
    path = _write(tmp_path, "ok.yaml", "opt: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="override 'model.block.args.x=&a \\[\\*a\\]' line 1: YAML anchors"):
        load_config(path, ["model.block.args.x=&a [*a]"])
    with pytest.raises(ConfigError, match="nesting deeper than"):
        load_config(path, ["model.block.args.x=" + "[" * 100 + "]" * 100])
    assert load_config(path, ["model.block.args.x=[1, {a: 2}]"]).model.block.args == {"x": [1, {"a": 2}]}


# files the project writes itself and reads back line by line (JSON lines, the run lock); every
# file a user hands over goes through safe_io.read_json / annotations.load_json_source
PROJECT_WRITTEN_JSON = {"libs/engine/val_history.py", "libs/engine/run_lock.py", "libs/commands/paper_table.py"}


def test_every_user_json_is_read_by_the_safe_reader():
    """No direct json.load / json.loads in libs/ outside safe_io and the project's own files."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    direct = {
        str(p.relative_to(repo))
        for p in (repo / "libs").rglob("*.py")
        if re.search(r"\bjson\.loads?\(", p.read_text(encoding="utf8"))
    }
    assert direct - {"libs/core/safe_io.py"} <= PROJECT_WRITTEN_JSON, sorted(direct)


def test_duplicate_video_ids_are_refused_by_every_json_reader(tmp_path):
    path = tmp_path / "anno.json"
    path.write_text('{"database": {"v1": {"subset": "a"}, "v1": {"subset": "b"}}}')
    with pytest.raises(UnsafeInputError, match="has the key 'v1' twice in one object"):
        load_json_source(path, "ground truth")
    with pytest.raises(UnsafeInputError, match="external score file .* has the key 'v1' twice"):
        read_json(path, "external score")
