"""Confined writes of the reporting tools (issue 15): visualize, paper_table, multi_seed, check_env,
make_synthetic never overwrite their inputs, never write through a symbolic link, never block on a
FIFO, and say so in one `error:` line (exit 2) before any work."""

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")


@pytest.fixture()
def vis(tmp_path) -> dict:
    """A two-video annotation JSON and a results JSON with one detection per video."""
    database = {vid: {"subset": "validation", "duration": 20.0, "fps": 25.0,
                      "annotations": [{"label": "Dive", "label_id": 0, "segment": [2.0, 6.0]}]}
                for vid in ("v1", "v2")}
    results = {vid: [{"label": "Dive", "segment": [2.5, 6.0], "score": 0.8}] for vid in database}
    (tmp_path / "gt.json").write_text(json.dumps({"database": database}))
    (tmp_path / "results.json").write_text(json.dumps({"results": results}))
    return {"gt": str(tmp_path / "gt.json"), "results": str(tmp_path / "results.json")}


def _visualize(argv, capsys) -> tuple[int, str]:
    from libs.commands import visualize

    code = visualize.main(argv)
    return code, capsys.readouterr().err


# --- visualize: outputs that are inputs (finding 2) ---------------------------------------------

@pytest.mark.parametrize("which", ["results", "gt"])
def test_visualize_pr_refuses_an_input_as_out(vis, which, capsys):
    before = Path(vis[which]).read_bytes()
    code, err = _visualize(["pr", vis["results"], "--gt", vis["gt"], "--out", vis[which]], capsys)
    assert code == 2 and "is also the input" in err and err.count("\n") == 1
    assert Path(vis[which]).read_bytes() == before


def test_visualize_pr_refuses_the_config_as_out(vis, tmp_path, capsys):
    import yaml

    from tests.tiny import tiny_config_dict

    config = tmp_path / "vis.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(vis["gt"], tmp_path, tmp_path,
                                                      {"dataset": {"num_classes": 1}})))
    before = config.read_bytes()
    code, err = _visualize(["pr", vis["results"], "--config", str(config), "--out", str(config)], capsys)
    assert code == 2 and "--out" in err and "is also the input --config" in err
    assert config.read_bytes() == before


def test_visualize_timeline_refuses_an_input_inside_out(vis, tmp_path, capsys):
    """--out DIR where DIR/v1.png is the annotation file (a hard link to it)."""
    out = tmp_path / "t"
    out.mkdir()
    os.link(vis["gt"], out / "v1.png")
    before = Path(vis["gt"]).read_bytes()
    code, err = _visualize(["timeline", vis["results"], "--gt", vis["gt"], "--out", str(out)], capsys)
    assert code == 2 and "is also the input --gt" in err
    assert Path(vis["gt"]).read_bytes() == before and not (out / "v2.png").exists()


# --- visualize: symbolic links and FIFOs (finding 1, 14) ----------------------------------------

def test_visualize_never_writes_through_a_symlink(vis, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "t"
    out.mkdir()
    (out / "v1.png").symlink_to(victim)
    code, err = _visualize(["timeline", vis["results"], "--gt", vis["gt"], "--out", str(out)], capsys)
    assert code == 2 and "is a symbolic link" in err
    (tmp_path / "link.png").symlink_to(victim)
    code, err = _visualize(["pr", vis["results"], "--gt", vis["gt"], "--out", str(tmp_path / "link.png")],
                           capsys)
    assert code == 2 and "is a symbolic link" in err
    assert victim.read_text() == "keep me"


def test_visualize_refuses_a_fifo_and_a_file_as_folder(vis, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    code, err = _visualize(["pr", vis["results"], "--gt", vis["gt"], "--out", str(tmp_path / "pipe.png")],
                           capsys)
    assert code == 2 and "pipe.png exists and is not a regular file" in err
    code, err = _visualize(["timeline", vis["results"], "--gt", vis["gt"], "--out", vis["results"]], capsys)
    assert code == 2 and "exists and is not a folder; give a folder for the" in err


def test_visualize_pr_writes_atomically(vis, tmp_path, capsys):
    out = tmp_path / "pr.png"
    out.write_text("old")
    code, _ = _visualize(["pr", vis["results"], "--gt", vis["gt"], "--out", str(out)], capsys)
    assert code == 0 and out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json", "pr.png", "results.json"]


# --- visualize timeline: unknown split, colliding names (finding 15) ----------------------------

def test_visualize_timeline_unknown_split_is_an_error(vis, tmp_path, capsys):
    code, err = _visualize(["timeline", vis["results"], "--gt", vis["gt"], "--split", "nosuch",
                            "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "--split nosuch: no such subset in the annotations; available subsets: validation" in err
    assert not (tmp_path / "t").exists()


def test_visualize_timeline_ids_that_sanitize_alike_get_distinct_files(tmp_path, capsys):
    results = {"a/b": [{"label": 0, "segment": [1.0, 2.0], "score": 0.5}],
               "a_b": [{"label": 0, "segment": [1.0, 3.0], "score": 0.5}]}
    path = tmp_path / "det.json"
    path.write_text(json.dumps({"results": results}))
    code, err = _visualize(["timeline", str(path), "--out", str(tmp_path / "t")], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["a_b.png", "a_b_2.png"]
