"""Confined writes, part 2 (issue 15): outputs never overwrite the inputs of the same command
(ground truth, features, results, the checkpoint's run files), special files are never replaced,
and over-long names are refused with a clear line."""
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from libs.utils.io import atomic_write_json
from libs.utils.paths import check_file_name
from tests.tiny import tiny_annotations, tiny_config_dict


def _workspace(tmp_path) -> dict:
    """A config, its GT, one feature file, a run folder with a (fake) checkpoint and its files."""
    gt = tmp_path / "anno.json"
    gt.write_text(json.dumps(tiny_annotations()))
    feats = tmp_path / "feats"
    feats.mkdir()
    torch.save(torch.zeros(10, 16), feats / "vid0.pt")
    scores = tmp_path / "ext.json"
    scores.write_text("{}")
    cfg = tiny_config_dict(gt, feats, tmp_path / "runs", {"test": {"ext_score_file": str(scores)}})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / "tiny_base"
    run.mkdir(parents=True)
    for name in ("last.pth", "epoch_001.pth", "log.txt", "val_history.jsonl", "config.yaml"):
        (run / name).write_bytes(b"keep " + name.encode())
    return dict(config=str(config), gt=gt, feat=feats / "vid0.pt", scores=scores, run=run)


def _one_error(capsys, call, fragment) -> None:
    with pytest.raises(SystemExit) as info:
        raise SystemExit(call())
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1 and fragment in err, err


def _snapshot(ws: dict) -> dict:
    files = [ws["gt"], ws["feat"], ws["scores"], *sorted(ws["run"].iterdir())]
    return {str(p): p.read_bytes() for p in files}


@pytest.mark.parametrize("target,flag,fragment", [
    ("gt", "--out", "is also the input dataset.json_file"),
    ("scores", "--json", "is also the input test.ext_score_file"),
    ("feat", "--out", "lies inside the feature folder (dataset.feat_folder)"),
    ("new_feat", "--out", "lies inside the feature folder (dataset.feat_folder)"),
    ("log.txt", "--out", "is also the input run file log.txt of the checkpoint's folder"),
    ("val_history.jsonl", "--json", "is also the input run file val_history.jsonl"),
    ("config.yaml", "--out", "is also the input run file config.yaml"),
    ("epoch_001.pth", "--save-raw", "is also the input run file epoch_001.pth"),
    ("epoch_002.pth", "--out", "is named like a checkpoint in the checkpoint's folder"),
])
def test_eval_outputs_never_overwrite_inputs(tmp_path, capsys, in_process, target, flag, fragment):
    import eval as eval_cli

    ws = _workspace(tmp_path)
    before = _snapshot(ws)
    path = {"gt": ws["gt"], "scores": ws["scores"], "feat": ws["feat"],
            "new_feat": ws["feat"].parent / "new.json"}.get(target, ws["run"] / target)
    _one_error(capsys, lambda: eval_cli.main([ws["config"], str(ws["run"] / "last.pth"), flag, str(path)]),
               fragment)
    assert _snapshot(ws) == before and not (ws["feat"].parent / "new.json").exists()


@pytest.mark.parametrize("target,fragment", [("gt", "--json {} is also the input --gt"),
                                             ("results", "--json {} is also the input RESULTS")])
def test_eval_results_json_never_overwrites_inputs(tmp_path, capsys, target, fragment):
    from libs.commands import eval_results

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(tiny_annotations()))
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {}}))
    path = gt if target == "gt" else results
    _one_error(capsys, lambda: eval_results.main([str(results), "--gt", str(gt), "--json", str(path)]),
               fragment.format(path))
    assert json.loads(gt.read_text()) == tiny_annotations()
    assert json.loads(results.read_text()) == {"results": {}}


def test_rescore_out_never_overwrites_gt(tmp_path, capsys, in_process):
    from libs.commands import rescore

    ws = _workspace(tmp_path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(b"raw")
    before = _snapshot(ws)
    _one_error(capsys, lambda: rescore.main([str(raw), ws["config"], "--out", str(ws["gt"])]),
               "--out {} is also the input dataset.json_file".format(ws["gt"]))
    assert _snapshot(ws) == before and raw.read_bytes() == b"raw"


# ------------------------------------------------------------------ special files are never replaced
def test_atomic_write_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="exists and is not a regular file"):
        atomic_write_json(fifo, {"a": 1})
    assert not fifo.is_file() and Path(fifo).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary file left


def test_eval_out_fifo_is_refused(tmp_path, capsys, in_process):
    import eval as eval_cli

    ws = _workspace(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _one_error(capsys, lambda: eval_cli.main([ws["config"], str(ws["run"] / "last.pth"), "--out", str(fifo)]),
               f"--out {fifo} exists and is not a regular file")
    assert not fifo.is_file()


# ------------------------------------------------------------------ over-long names
def test_over_long_names_are_refused():
    with pytest.raises(ValueError, match="over the 255-byte file-name limit"):
        check_file_name("v" * 256, "video id")
    with pytest.raises(ValueError, match="is 300 bytes long"):
        check_file_name("é" * 150, "video id")
    assert check_file_name("v" * 255, "video id") == "v" * 255


# ------------------------------------------------------------------ make_synthetic stays inside --out
def _synthetic(tmp_path, ids=("vid0",)) -> Path:
    db = {v: {"subset": "training", "duration": 10.0, "fps": 30.0, "annotations": []} for v in ids}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": db}))
    return ann


@pytest.mark.parametrize("argv,fragment", [
    (["--file-prefix", "../outside/"], "--file-prefix '../outside/' must be part of a file name: it contains '/'"),
    (["--feature-type", "/../../x"], "--feature-type '/../../x' must be part of a file name"),
    (["--feature-type", ".."], "--feature-type '..' must be part of a file name: it is '..'"),
])
def test_make_synthetic_name_parts_are_plain(tmp_path, capsys, argv, fragment):
    from libs.commands import make_synthetic

    ann = _synthetic(tmp_path)
    _one_error(capsys, lambda: make_synthetic.main(["--gt", str(ann), "--out", str(tmp_path / "o"), *argv]),
               fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.json"]


def test_make_synthetic_refuses_symlinks_and_the_gt(tmp_path, capsys):
    from libs.commands import make_synthetic

    ann = _synthetic(tmp_path, ("vid0", "vid1"))
    out = tmp_path / "o"
    out.mkdir()
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"keep")
    os.symlink(victim, out / "vid1.pt")
    _one_error(capsys, lambda: make_synthetic.main(["--gt", str(ann), "--out", str(out)]),
               f"feature file of video 'vid1' {out / 'vid1.pt'} is a symbolic link")
    assert victim.read_bytes() == b"keep" and not (out / "vid0.pt").exists()
    before = ann.read_bytes()
    ann2 = tmp_path / "vid0.npy"  # the GT named like a feature file
    ann2.write_bytes(before)
    _one_error(capsys, lambda: make_synthetic.main(["--gt", str(ann2), "--out", str(tmp_path),
                                                    "--file-ext", ".npy"]),
               f"feature file {ann2} of video 'vid0' is also the input --gt")
    assert ann.read_bytes() == before and ann2.read_bytes() == before


def test_make_synthetic_over_long_id(tmp_path, capsys):
    from libs.commands import make_synthetic

    ann = _synthetic(tmp_path, ("v" * 300,))
    _one_error(capsys, lambda: make_synthetic.main(["--gt", str(ann), "--out", str(tmp_path / "o")]),
               "cannot be used as a file name: it is 300 bytes long, over the 255-byte file-name limit")
    ann = _synthetic(tmp_path, ("v" * 250,))
    _one_error(capsys, lambda: make_synthetic.main(["--gt", str(ann), "--out", str(tmp_path / "o"),
                                                    "--feature-type", "_spatial_feature"]),
               "use a shorter video id, --file-prefix or --feature-type")


# ------------------------------------------------------------------ --resume writes only into run folders
@pytest.fixture
def downloaded_checkpoint(tmp_path) -> Path:
    """A valid training checkpoint in a folder train.py did not make (no .actionmamba_run)."""
    from libs.core.config import load_config
    from libs.engine.resume import checkpoint_state
    from libs.engine.train_loop import _build_state
    from libs.modeling import build_model
    from tests.test_resume_exact import make_tiny_config

    cfg = load_config(str(make_tiny_config(tmp_path, num_train=2)))
    model = build_model(cfg.model, cfg.train, cfg.test)
    state = _build_state(cfg, model, 1, torch.device("cpu"))
    folder = tmp_path / "dl"
    folder.mkdir()
    torch.save(checkpoint_state(state, cfg, torch.Generator()), folder / "last.pth")
    return folder / "last.pth"


def test_resume_outside_a_run_folder_is_refused(downloaded_checkpoint, capsys, in_process):
    import train

    folder = downloaded_checkpoint.parent
    _one_error(capsys, lambda: train.main(["--resume", str(folder), "--device", "cpu"]),
               f"--resume {downloaded_checkpoint}: {folder} holds no .actionmamba_run, so it is not a "
               "run folder train.py created")
    assert sorted(p.name for p in folder.iterdir()) == ["last.pth"]  # no log, results, lock


def test_train_help_names_the_run_name_metavar(capsys):
    import train

    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "--name NAME" in out and "--name OUTPUT" not in out


def test_an_over_long_run_name_is_one_clear_error(tmp_path):
    from libs.core.config import load_config
    from libs.engine.run_folder import make_run_folder

    cfg = load_config(data={"output_folder": str(tmp_path / "out")}, path="configs/my_cfg.yaml")
    with pytest.raises(ValueError, match=r"run name \(--name\) 'nnn.* it is 300 bytes long"):
        make_run_folder(cfg, "n" * 300)
    assert not (tmp_path / "out").exists()


def test_rescore_logs_its_cpu_threads_once(tmp_path, caplog, in_process):
    import logging

    from libs.commands import rescore

    ws = _workspace(tmp_path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(b"not a raw file")
    logging.getLogger("libs.utils.threads").setLevel(logging.NOTSET)  # as in a fresh process
    assert rescore.main([str(raw), ws["config"], "--threads", "1"]) == 2
    assert caplog.text.count("CPU threads: 1 (--threads)") == 1, caplog.text


def test_train_refuses_a_run_folder_name_over_255_bytes(tmp_path, capsys, in_process):
    import train

    ws = _workspace(tmp_path)
    _one_error(capsys, lambda: train.main([ws["config"], "--name", "n" * 252, "--device", "cpu"]),
               "it is 257 bytes long, over the 255-byte file-name limit; give a shorter --name")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny_base"]  # nothing new
