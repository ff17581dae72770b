"""Numbers too long or too large to use: one clear error naming the file or the key, never
Python's bare "Exceeds the limit (4300 digits)" or torch's "Overflow when unpacking long"."""
from __future__ import annotations

import pytest

from libs.core.config import ConfigError, load_config
from libs.core.safe_io import UnsafeInputError, load_yaml, read_json
from libs.utils.seeding import fix_random_seed

LONG = "9" * 5000  # over Python's 4300-digit limit for int(str)


def test_json_number_over_the_digit_limit_names_the_file(tmp_path):
    path = tmp_path / "anno.json"
    path.write_text('{"database": {"v": {"duration": ' + LONG + "}}}")
    with pytest.raises(UnsafeInputError) as info:
        read_json(path, "annotation")
    assert str(info.value).startswith(f"annotation file '{path}' holds a number with more than 4300 digits")


def test_yaml_number_over_the_digit_limit_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"opt:\n  epochs: {LONG}\n")
    with pytest.raises(UnsafeInputError) as info:
        load_yaml(path)
    assert str(info.value).startswith(f"{path}: holds a number with more than 4300 digits")


def test_override_number_over_the_digit_limit_names_the_override(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'opt.epochs=9999.*holds a number with more than 4300 digits"):
        load_config(data={}, overrides=[f"opt.epochs={LONG}"])


def test_yaml_impossible_date_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 2020-13-01\n")
    with pytest.raises(ConfigError, match=r"c.yaml: holds a value that cannot be read: month must be in 1..12"):
        load_config(str(path))


@pytest.mark.parametrize("seed", [10**26, -1, 2**63])
def test_seed_out_of_range_names_the_key(seed):
    with pytest.raises(ConfigError) as info:
        load_config(data={"seed": seed})
    assert "seed must be an integer in 0 .. 2**63 - 1, got" in str(info.value)


def test_seed_at_the_edges_loads():
    assert load_config(data={"seed": 2**63 - 1}).seed == 2**63 - 1
    assert load_config(data={"seed": 0}).seed == 0


def test_fix_random_seed_refuses_what_torch_cannot_take():
    with pytest.raises(ValueError, match=r"seed must be an integer in 0 .. 2\*\*64 - 1"):
        fix_random_seed(10**26, deterministic=False)
