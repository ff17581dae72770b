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


# --- paper_table (findings 3, 10) ---------------------------------------------------------------

THUMOS_TIOUS = [0.3, 0.4, 0.5, 0.6, 0.7]


def _paper_run(tmp_path, name="run", dataset="anet", tious=THUMOS_TIOUS) -> Path:
    import yaml

    folder = tmp_path / name
    folder.mkdir()
    metrics = {"tiou": tious, "mAP": [0.5] * len(tious), "average_mAP": 0.4716}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"dataset": {"name": dataset}, "model": {"block": {"type": "dbm"}}}))
    return folder


def _paper_table(argv, capsys) -> tuple[int, str, str]:
    from libs.commands import paper_table

    code = paper_table.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_paper_table_refuses_outputs_that_are_inputs_or_in_the_run(tmp_path, capsys):
    run = _paper_run(tmp_path)
    before = (run / "metrics.json").read_bytes()
    code, _, err = _paper_table([str(run), "--out", str(run / "metrics.json")], capsys)
    assert code == 2 and "is also the input run file metrics.json of" in err
    code, _, err = _paper_table([str(run), "--json", str(run / "table.json")], capsys)
    assert code == 2 and "lies inside the run folder" in err
    code, _, err = _paper_table([str(run / "metrics.json"), "--out", str(run / "config.yaml")], capsys)
    assert code == 2 and "is also the input run file config.yaml of" in err
    table = tmp_path / "table.md"
    code, _, err = _paper_table([str(run), "--out", str(table), "--json", str(table)], capsys)
    assert code == 2 and "--json and --out are the same file" in err and not table.exists()
    assert (run / "metrics.json").read_bytes() == before
    assert _paper_table([str(run), "--out", str(table)], capsys)[0] == 0  # the run still reads


def test_paper_table_refuses_symlink_and_fifo_outputs(tmp_path, capsys):
    run = _paper_run(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "link.md").symlink_to(victim)
    code, _, err = _paper_table([str(run), "--out", str(tmp_path / "link.md")], capsys)
    assert code == 2 and "--out" in err and "is a symbolic link" in err and victim.read_text() == "keep me"
    os.mkfifo(tmp_path / "pipe.json")  # a plain open() would block here
    code, _, err = _paper_table([str(run), "--json", str(tmp_path / "pipe.json")], capsys)
    assert code == 2 and "pipe.json exists and is not a regular file" in err


def test_paper_table_marks_a_run_off_the_paper_tiou_set(tmp_path, capsys):
    run = _paper_run(tmp_path)  # ActivityNet, evaluated at THUMOS' 0.3:0.1:0.7
    table = tmp_path / "t.json"
    code, out, _ = _paper_table([str(run), "--json", str(table)], capsys)
    assert code == 0
    assert "evaluated at tIoU 0.30, 0.40, 0.50, 0.60, 0.70, not at the paper's ActivityNet-1.3 set" in out
    assert "(the paper's; rows marked * over their own tIoU set)" in out and "+5.14*" in out
    assert "not comparable" in json.loads(table.read_text())[0]["tiou_note"]
    ok = _paper_run(tmp_path, "thumos_run", "thumos14")
    code, out, _ = _paper_table([str(ok)], capsys)
    assert code == 0 and "*" not in out and "not comparable" not in out


def test_paper_table_dataset_takes_the_config_name(tmp_path, capsys):
    """The 'not a paper dataset' error lists config names (thumos14): `--dataset thumos14` works too."""
    run = _paper_run(tmp_path, dataset="custom")
    code, out, _ = _paper_table([str(run), "--dataset", "thumos14"], capsys)
    assert code == 0 and "THUMOS-14" in out and "*" not in out


# --- multi_seed (finding 4): --json checked before any seed trains --------------------------------

@pytest.fixture()
def seed_config(vis, tmp_path) -> dict:
    """A config that inherits (`_base_`) a tiny base config."""
    import yaml

    from tests.tiny import tiny_config_dict

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config_dict(vis["gt"], tmp_path, tmp_path / "runs",
                                                    {"dataset": {"num_classes": 1}})))
    config = tmp_path / "child.yaml"
    config.write_text("_base_: base.yaml\nseed: 3\n")
    return {"base": base, "config": config}


@pytest.mark.parametrize("target", ["config", "base", "symlink", "fifo"])
def test_multi_seed_refuses_a_bad_json_before_training(seed_config, tmp_path, monkeypatch, capsys, target):
    from libs.commands import multi_seed

    monkeypatch.setattr(multi_seed, "train_one", lambda *a: pytest.fail("a seed was trained"))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = {"config": seed_config["config"], "base": seed_config["base"], "symlink": tmp_path / "link.json",
            "fifo": tmp_path / "pipe.json"}[target]
    if target == "symlink":
        path.symlink_to(victim)
    if target == "fifo":
        os.mkfifo(path)
    before = {p: p.read_bytes() for p in (seed_config["config"], seed_config["base"], victim)}
    code = multi_seed.main([str(seed_config["config"]), "--seeds", "2", "--json", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --json ") and err.count("\n") == 1
    expected = {"config": "is also the input CONFIG", "base": "is also the input CONFIG",
                "symlink": "is a symbolic link", "fifo": "exists and is not a regular file"}[target]
    assert expected in err
    assert {p: p.read_bytes() for p in before} == before


# --- check_env (finding 6): --json checked first, one error line ----------------------------------

@pytest.mark.parametrize("target", ["symlink", "fifo", "folder", "slash"])
def test_check_env_json_output_is_checked_first(tmp_path, monkeypatch, capsys, target):
    from libs.commands import check_env

    monkeypatch.setattr(check_env, "run_checks", lambda gpu: pytest.fail("the checks ran"))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = tmp_path / "out.json"
    if target == "symlink":
        path.symlink_to(victim)
    elif target == "fifo":
        os.mkfifo(path)
    elif target == "folder":
        path.mkdir()
    arg = str(tmp_path / "newdir") + "/" if target == "slash" else str(path)
    assert check_env.main(["--json", arg]) == 2
    err = capsys.readouterr().err
    expected = {"symlink": "is a symbolic link", "fifo": "exists and is not a regular file",
                "folder": "out.json is a folder; give a file name",
                "slash": "newdir/ names a folder; give a file name (e.g."}[target]
    assert err.startswith("error: --json ") and expected in err and err.count("\n") == 1
    assert victim.read_text() == "keep me"


# --- make_synthetic --out a file (finding 14) -----------------------------------------------------

def test_make_synthetic_out_an_existing_file(vis, capsys):
    from libs.commands import make_synthetic

    before = Path(vis["results"]).read_bytes()
    assert make_synthetic.main(["--gt", vis["gt"], "--out", vis["results"]]) == 2
    err = capsys.readouterr().err
    assert "results.json exists and is not a folder; give a folder for the feature files" in err
    assert err.count("\n") == 1 and Path(vis["results"]).read_bytes() == before
