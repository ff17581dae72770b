"""`_base_` inheritance against hostile trees, and numbers written the YAML 1.2 way.

- a wide fan-out (20 bases, each with 20 bases, ...) is refused at MAX_BASE_FILES files in all,
  instead of reading 20**5 files; a base named twice in one list is refused;
- a cycle through a symlinked folder is reported as a cycle (paths are compared resolved);
- `config_files` lists the config and every base it reads (the commands' output checks use it);
- `learning_rate: 2e-3` (no dot: a string to YAML 1.1) is the number it looks like.
"""
import os
import time

import pytest

from libs.core.config import config_files, load_config
from libs.core.config_merge import MAX_BASE_FILES, ConfigError


def test_wide_fan_out_is_refused_quickly(tmp_path):
    (tmp_path / "l5.yaml").write_text("seed: 1\n")
    for level in range(4, -1, -1):
        bases = ", ".join(f"t{level}_{i}/l{level + 1}.yaml" for i in range(20))  # 20 links
        for i in range(20):
            folder = tmp_path / f"t{level}_{i}"
            folder.mkdir()
            os.symlink(tmp_path / f"l{level + 1}.yaml", folder / f"l{level + 1}.yaml")
        (tmp_path / f"l{level}.yaml").write_text(f"_base_: [{bases}]\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"more than {MAX_BASE_FILES} _base_ files in all"):
        load_config(str(tmp_path / "l0.yaml"))
    assert time.perf_counter() - start < 10


def test_a_base_named_twice_is_refused(tmp_path):
    (tmp_path / "b.yaml").write_text("seed: 1\n")
    (tmp_path / "c.yaml").write_text("_base_: [b.yaml, b.yaml]\n")
    with pytest.raises(ConfigError, match="names a file twice"):
        load_config(str(tmp_path / "c.yaml"))


def test_cycle_through_a_symlinked_folder_is_a_cycle(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    (real / "a.yaml").write_text("_base_: ../link/a.yaml\n")
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(str(real / "a.yaml"))


def test_config_files_lists_the_config_and_its_bases(tmp_path):
    (tmp_path / "root.yaml").write_text("seed: 3\n")
    (tmp_path / "mid.yaml").write_text("_base_: root.yaml\n")
    (tmp_path / "child.yaml").write_text("_base_: mid.yaml\n")
    assert config_files(str(tmp_path / "child.yaml")) == [
        str((tmp_path / name).resolve()) for name in ("child.yaml", "mid.yaml", "root.yaml")]
    assert config_files(str(tmp_path / "root.yaml")) == [str((tmp_path / "root.yaml").resolve())]


@pytest.mark.parametrize("text, value", [("2e-3", 2e-3), ("1E-4", 1e-4), ("+.5e1", 5.0)])
def test_exponent_numbers_without_a_dot_are_numbers(tmp_path, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"opt:\n  learning_rate: {text}\n")
    assert load_config(str(path)).opt.learning_rate == value
    assert load_config(str(path), [f"test.nms_sigma={text}"]).test.nms_sigma == value


def test_a_string_where_a_number_belongs_is_still_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("opt:\n  learning_rate: fast\n")
    with pytest.raises(ConfigError, match="opt.learning_rate: expected a number"):
        load_config(str(path))
