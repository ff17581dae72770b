"""Confined writes, part 3 (issue 15): outputs never replace a config's `_base_` file, a
file-valued config key (eval.blocked_videos_file), the run lock, or the inputs of
tools/diagnose.py; --diagnose is checked before anything is written; a trailing '/' names a
folder; an output_folder that is a file and an over-long suffixed run folder are clear errors."""
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from libs.utils.paths import check_outputs
from tests.test_confined_writes_more import _one_error, _snapshot, _workspace
from tests.tiny import tiny_annotations


def _child_config(ws: dict) -> tuple[str, Path]:
    """A config that inherits the workspace's config through `_base_`: (child, base)."""
    base = Path(ws["config"])
    child = base.parent / "child.yaml"
    child.write_text(f"_base_: {base.name}\n")
    return str(child), base


def _blocked(tmp_path) -> Path:
    path = tmp_path / "blocked.json"
    path.write_text("[]")
    return path


# ------------------------------------------------------------------ 5: bases and file-valued keys
@pytest.mark.parametrize("flag", ["--out", "--json", "--save-raw"])
def test_eval_never_overwrites_a_base_config(tmp_path, capsys, in_process, flag):
    import eval as eval_cli

    ws = _workspace(tmp_path)
    child, base = _child_config(ws)
    before = base.read_bytes()
    _one_error(capsys, lambda: eval_cli.main([child, str(ws["run"] / "last.pth"), flag, str(base)]),
               f"{flag} {base} is also the input config file (_base_ of {child})")
    assert base.read_bytes() == before


def test_eval_never_overwrites_the_blocked_videos_file(tmp_path, capsys, in_process):
    import eval as eval_cli

    ws = _workspace(tmp_path)
    blocked = _blocked(tmp_path)
    _one_error(capsys, lambda: eval_cli.main([ws["config"], str(ws["run"] / "last.pth"), "--opts",
                                              f"eval.blocked_videos_file={blocked}", "--out", str(blocked)]),
               f"--out {blocked} is also the input eval.blocked_videos_file")
    assert blocked.read_text() == "[]"


def test_rescore_never_overwrites_a_base_config_or_blocked_file(tmp_path, capsys, in_process):
    from libs.commands import rescore

    ws = _workspace(tmp_path)
    child, base = _child_config(ws)
    blocked = _blocked(tmp_path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(b"raw")
    before = base.read_bytes()
    _one_error(capsys, lambda: rescore.main([str(raw), child, "--json", str(base)]),
               f"--json {base} is also the input config file (_base_ of {child})")
    _one_error(capsys, lambda: rescore.main([str(raw), child, "--opts", f"eval.blocked_videos_file={blocked}",
                                             "--out", str(blocked)]),
               f"--out {blocked} is also the input eval.blocked_videos_file")
    assert base.read_bytes() == before and blocked.read_text() == "[]"


def test_infer_never_overwrites_a_base_config_or_the_annotations(tmp_path, capsys, in_process):
    from libs.commands import infer

    ws = _workspace(tmp_path)
    child, base = _child_config(ws)
    before = _snapshot(ws)
    base_bytes = base.read_bytes()
    ckpt = str(ws["run"] / "last.pth")
    _one_error(capsys, lambda: infer.main([child, ckpt, str(ws["feat"]), "--out", str(base)]),
               f"--out {base} is also the input config file (_base_ of {child})")
    _one_error(capsys, lambda: infer.main([child, ckpt, str(ws["feat"]), "--out", str(ws["gt"])]),
               f"--out {ws['gt']} is also the input dataset.json_file")
    assert base.read_bytes() == base_bytes and _snapshot(ws) == before


# ------------------------------------------------------------------ 11: --diagnose checked up front
def _eval_diagnose(tmp_path, capsys, ws, diag, fragment, *extra):
    import eval as eval_cli

    out = tmp_path / "results_out.json"
    before = _snapshot(ws)
    _one_error(capsys, lambda: eval_cli.main([ws["config"], str(ws["run"] / "last.pth"), "--out", str(out),
                                              "--diagnose", str(diag), *extra]), fragment)
    assert _snapshot(ws) == before and not out.exists()


def test_eval_diagnose_inside_the_feature_folder_is_refused(tmp_path, capsys, in_process):
    ws = _workspace(tmp_path)
    diag = ws["feat"].parent / "diag"
    _eval_diagnose(tmp_path, capsys, ws, diag, "lies inside the feature folder (dataset.feat_folder)")
    assert not diag.exists()


def test_eval_diagnose_a_file_is_refused_before_evaluation(tmp_path, capsys, in_process):
    ws = _workspace(tmp_path)
    diag = tmp_path / "diag.txt"
    diag.write_text("keep")
    _eval_diagnose(tmp_path, capsys, ws, diag, f"--diagnose {diag} exists and is not a folder")
    assert diag.read_text() == "keep"


def test_eval_diagnose_a_symlink_is_refused_before_evaluation(tmp_path, capsys, in_process):
    ws = _workspace(tmp_path)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "diag_link"
    link.symlink_to(target)
    _eval_diagnose(tmp_path, capsys, ws, link, f"--diagnose {link} is a symbolic link")
    assert list(target.iterdir()) == []


def test_eval_diagnose_files_never_replace_an_input(tmp_path, capsys, in_process):
    ws = _workspace(tmp_path)  # the blocked-videos file happens to be named report.html
    diag = tmp_path / "diag"
    diag.mkdir()
    blocked = diag / "report.html"
    blocked.write_text("[]")
    _eval_diagnose(tmp_path, capsys, ws, diag, f"--diagnose {blocked} is also the input eval.blocked_videos_file",
                   "--opts", f"eval.blocked_videos_file={blocked}")
    assert blocked.read_text() == "[]"


@pytest.mark.parametrize("name", ["diagnosis.json", "report.html"])
def test_diagnose_cli_never_overwrites_its_inputs(tmp_path, capsys, name):
    from libs.commands import diagnose

    out = tmp_path / "diag"
    out.mkdir()
    gt, results = tmp_path / "gt.json", out / name
    gt.write_text(json.dumps(tiny_annotations()))
    results.write_text(json.dumps({"results": {}}))
    code = diagnose.main([str(results), "--gt", str(gt), "--out", str(out), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1, err
    assert f"--out {results} is also the input RESULTS" in err, err
    assert json.loads(results.read_text()) == {"results": {}}


def test_diagnose_cli_never_overwrites_its_config(tmp_path, capsys):
    from libs.commands import diagnose

    out = tmp_path / "diag"
    out.mkdir()
    gt, results, config = tmp_path / "gt.json", tmp_path / "r.json", out / "report.html"
    gt.write_text(json.dumps(tiny_annotations()))
    results.write_text(json.dumps({"results": {}}))
    config.write_text("seed: 1\n")
    code = diagnose.main([str(results), "--gt", str(gt), "--out", str(out), "--no-figures",
                          "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and f"--out {config} is also the input --config" in err, err
    assert config.read_text() == "seed: 1\n"


# ------------------------------------------------------------------ 12: the run lock
def test_eval_never_replaces_the_run_lock(tmp_path, capsys, in_process):
    import eval as eval_cli

    ws = _workspace(tmp_path)
    lock = ws["run"] / ".lock"
    lock.write_text('{"pid": 1}')
    _one_error(capsys, lambda: eval_cli.main([ws["config"], str(ws["run"] / "last.pth"), "--out", str(lock)]),
               "is also the input run file .lock of the checkpoint's folder")
    assert lock.read_text() == '{"pid": 1}'


# ------------------------------------------------------------------ 13: a trailing separator
def test_check_outputs_refuses_a_trailing_separator(tmp_path):
    path = str(tmp_path / "newdir") + os.sep
    with pytest.raises(ValueError, match="ends with a path separator, so it names a folder"):
        check_outputs([], [("--out", path)])
    assert not (tmp_path / "newdir").exists()


def test_eval_out_with_a_trailing_slash_writes_no_file(tmp_path, capsys, in_process):
    import eval as eval_cli

    ws = _workspace(tmp_path)
    path = str(tmp_path / "newdir") + "/"
    _one_error(capsys, lambda: eval_cli.main([ws["config"], str(ws["run"] / "last.pth"), "--out", path]),
               f"--out {path} ends with a path separator, so it names a folder")
    assert not (tmp_path / "newdir").exists()


# ------------------------------------------------------------------ 14: output_folder and run names
def test_train_output_folder_that_is_a_file(tmp_path, capsys, in_process):
    import train as train_cli

    ws = _workspace(tmp_path)
    afile = tmp_path / "not_a_folder"
    afile.write_text("keep")
    _one_error(capsys, lambda: train_cli.main([ws["config"], "--name", "x", "--opts", f"output_folder={afile}"]),
               f"output_folder {afile} exists and is not a folder")
    assert afile.read_text() == "keep"


def test_suffixed_run_folder_name_over_the_limit(tmp_path):
    from libs.core.config import load_config
    from libs.engine.run_folder import make_run_folder

    ws = _workspace(tmp_path)
    cfg = load_config(ws["config"], [f"output_folder={tmp_path / 'out'}"])
    name = "n" * (255 - len("tiny_"))
    (tmp_path / "out" / f"tiny_{name}").mkdir(parents=True)
    with pytest.raises(ValueError, match="over the 255-byte file-name limit"):
        make_run_folder(cfg, name)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"tiny_{name}"]


def test_infer_plot_with_a_trailing_slash_is_refused(tmp_path, capsys, in_process):
    from libs.commands import infer

    ws = _workspace(tmp_path)
    plot = str(tmp_path / "plots") + "/"
    _one_error(capsys, lambda: infer.main([ws["config"], str(ws["run"] / "last.pth"), str(ws["feat"]),
                                           "--out", str(tmp_path / "d.json"), "--plot", plot]),
               f"--plot {plot} ends with a path separator, so it names a folder")
    assert not (tmp_path / "plots").exists() and not (tmp_path / "d.json").exists()
