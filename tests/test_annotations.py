"""libs/core/annotations.py: the one annotation-JSON parser (dataset, ground truth, tools)."""

import json

import pytest

from libs.core.annotations import read_annotations, remove_duplicate_annotations


def _db(*acts_per_video, subset="validation") -> dict:
    return {"database": {f"v{i}": {"subset": subset, "duration": 30.0, "annotations": list(acts)}
                         for i, acts in enumerate(acts_per_video)}}


def _act(label, segment, label_id=None) -> dict:
    act = {"label": label, "segment": segment}
    if label_id is not None:
        act["label_id"] = label_id
    return act


def test_reads_a_file_and_returns_the_label_maps(tmp_path):
    path = tmp_path / "anno.json"
    path.write_text(json.dumps(_db([_act("Run", [1, 2], 1), _act("Jump", [3, 4], 0)], [_act("Run", [5, 6], 1)])))
    ann = read_annotations(str(path))
    assert ann.source == str(path) and list(ann.database) == ["v0", "v1"]
    assert ann.label_ids == {"Run": 1, "Jump": 0} and ann.id_to_name == {1: "Run", 0: "Jump"}


def test_label_ids_are_optional_unless_required():
    data = _db([_act("Run", [1, 2]), _act("Jump", [3, 4], 0)])
    ann = read_annotations(data, "ground truth")
    assert ann.source == "<ground truth dict>" and ann.id_to_name == {0: "Jump"}
    with pytest.raises(ValueError, match=r"video 'v0' annotation 0: label 'Run' has no 'label_id'"):
        read_annotations(data, require_label_ids=True)


def test_one_name_per_id_always_one_id_per_name_when_required():
    two_names = _db([_act("Run", [1, 2], 0), _act("Jump", [3, 4], 0)])
    for strict in (False, True):
        with pytest.raises(ValueError, match="annotation 1: label 'Jump' with label_id 0 contradicts"):
            read_annotations(two_names, require_label_ids=strict)
    two_ids = _db([_act("Run", [1, 2], 0)], [_act("Run", [3, 4], 1)])
    assert read_annotations(two_ids).label_ids == {"Run": 1}  # lenient: the last id of a name
    with pytest.raises(ValueError, match=r"video 'v1' annotation 0: label 'Run' with label_id 1 contradicts"):
        read_annotations(two_ids, require_label_ids=True)


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"version": 1}, r"annotations <annotations dict> has no 'database' key"),
        ({"database": []}, "'database' is not an object"),
        ({"database": {"v": ["training"]}}, "video 'v' must be an object, got list"),
        ({"database": {"v": {"annotations": {}}}}, "video 'v': 'annotations' must be a list"),
        (_db([{"segment": [1, 2]}]), "video 'v0' annotation 0: expected an object with a string 'label'"),
        (_db([_act("Run", [1, "2"], 0)]), r"video 'v0' annotation 0: 'segment' must be \[start, end\]"),
        (_db([_act("Run", [1, float("inf")], 0)]), "video 'v0' annotation 0: 'segment' must be finite"),
        (_db([_act("Run", [1, 2], 1.5)]), "'label_id' must be an integer, got 1.5"),
    ],
)
def test_bad_structure_names_the_place(data, pattern):
    with pytest.raises(ValueError, match=pattern):
        read_annotations(data)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read annotations file .*missing.json"):
        read_annotations(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"database": ')
    with pytest.raises(ValueError, match="bad.json' is not valid JSON"):
        read_annotations(str(tmp_path / "bad.json"))


def test_remove_duplicate_annotations():
    acts = [_act("Run", [1.0, 5.0]), _act("Run", [1.0005, 4.9995]), _act("Jump", [1.0, 5.0]),
            _act("Run", [2.0, 2.0]), _act("Run", [1.0, 5.01]), _act("Run", [6.0, 5.0])]
    kept = remove_duplicate_annotations(acts)
    assert kept == [acts[0], acts[2], acts[4]]  # near-duplicate, zero and negative length dropped
    assert remove_duplicate_annotations(acts, tol=0.02) == [acts[0], acts[2]]
