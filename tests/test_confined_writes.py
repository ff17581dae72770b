"""Every path the project writes is confined (issue 15): ids and run names, --overwrite,
outputs that are inputs, symlinks, umask, and the numeric CLI arguments that shape outputs."""
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml

from libs.core.config import load_config
from libs.datasets.features import feature_path
from libs.engine.run_folder import MARKER_NAME, make_run_folder
from libs.utils.io import atomic_write_json, atomic_write_text
from libs.utils.logging import setup_logging
from libs.utils.paths import check_file_name, check_outputs
from tests.tiny import tiny_annotations, tiny_config_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/b", "..", ".", "", "a\x00b"])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(ValueError, match="cannot be used as a file name"):
        check_file_name(bad, "video id", "anno.json")
    with pytest.raises(ValueError, match="video id"):
        feature_path("/feats", bad)


def test_safe_names_pass():
    for good in ("video_test_0000004", "v_abc-1.2", "..hidden", "a..b"):
        assert check_file_name(good, "video id") == good
    assert feature_path("/f", "vid", "v_", "_rgb", ".npy") == "/f/v_vid_rgb.npy"


def test_make_synthetic_refuses_ids_outside_out_before_writing(tmp_path):
    import libs.commands.make_synthetic as ms

    db = {"ok": {"subset": "training", "duration": 10.0, "fps": 30.0, "annotations": []},
          "../../escaped": {"subset": "training", "duration": 10.0, "fps": 30.0, "annotations": []}}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": db}))
    with pytest.raises(ValueError) as info:
        ms.make_synthetic(str(ann), str(tmp_path / "a" / "b"), dim=4)
    assert str(ann) in str(info.value) and "'../../escaped'" in str(info.value)
    assert not (tmp_path / "escaped.pt").exists() and not (tmp_path / "a" / "b" / "ok.pt").exists()


def _cfg(tmp_path):
    return load_config(data={"output_folder": str(tmp_path / "out")}, path="configs/my_cfg.yaml")


@pytest.mark.parametrize("name", ["x/../../../victim", "/abs", ".."])
def test_run_names_are_plain(tmp_path, name):
    with pytest.raises(ValueError, match=r"run name \(--name\)"):
        make_run_folder(_cfg(tmp_path), name)


def test_overwrite_deletes_only_marked_folders_inside_output_folder(tmp_path):
    cfg = _cfg(tmp_path)
    run, _ = make_run_folder(cfg, "exp")
    assert (run / MARKER_NAME).is_file()
    (run / MARKER_NAME).unlink()  # a folder with config.yaml but not made by us
    with pytest.raises(ValueError, match="not a run folder"):
        make_run_folder(cfg, "exp", overwrite=True)
    assert (run / "config.yaml").is_file()
    victim = tmp_path / "victim"  # a marked folder outside output_folder, reached by a symlink
    victim.mkdir()
    (victim / MARKER_NAME).write_text("x")
    (victim / "precious").write_text("keep")
    os.symlink(victim, tmp_path / "out" / "my_cfg_link")
    with pytest.raises(ValueError, match="outside"):
        make_run_folder(cfg, "link", overwrite=True)
    assert (victim / "precious").read_text() == "keep"


def test_check_outputs(tmp_path):
    src = tmp_path / "in.pt"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="--out .* is also the input feature file"):
        check_outputs([("feature file", src)], [("--out", str(src))])
    with pytest.raises(ValueError, match="--metrics and --results are the same file"):
        check_outputs([], [("--results", tmp_path / "r.json"), ("--metrics", tmp_path / "r.json")])
    with pytest.raises(ValueError, match="is a folder"):
        check_outputs([], [("--out", tmp_path)])
    os.symlink(src, tmp_path / "link.json")
    with pytest.raises(ValueError, match="symbolic link"):
        check_outputs([], [("--out", tmp_path / "link.json")])
    check_outputs([("feature file", src)], [("--out", tmp_path / "new.json"), ("--plot", None)])


def test_atomic_write_refuses_symlink_and_honours_umask(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    os.symlink(target, tmp_path / "out.json")
    with pytest.raises(ValueError, match="symbolic link"):
        atomic_write_json(tmp_path / "out.json", {"a": 1})
    assert target.read_text() == "keep"
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    atomic_write_text(tmp_path / "b.txt", "x")
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o666 & ~old


def test_log_txt_symlink_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("")
    (tmp_path / "run").mkdir()
    os.symlink(victim, tmp_path / "run" / "log.txt")
    with pytest.raises(ValueError, match="log file .* symbolic link"):
        setup_logging(tmp_path / "run")
    assert victim.read_text() == ""


# ---------------------------------------------------------------- CLI: one `error:` line, exit 2
def _workspace(tmp_path) -> tuple[str, Path]:
    """A config + one feature file (enough for infer.py to get to its checks)."""
    ann = tmp_path / "anno.json"
    ann.write_text(json.dumps(tiny_annotations()))
    feats = tmp_path / "feats"
    feats.mkdir()
    torch.save(torch.zeros(10, 16), feats / "vid0.pt")
    cfg = tiny_config_dict(ann, feats, tmp_path / "runs", {"dataset": {"input_dim": 16}})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return str(config), feats / "vid0.pt"


def _one_error(capsys, call, fragment) -> None:
    with pytest.raises(SystemExit) as info:
        rc = call()
        raise SystemExit(rc)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1 and fragment in err, err


@pytest.mark.parametrize("argv,fragment", [
    (["--fps", "nan"], "--fps: must be a finite number > 0, got 'nan'"),
    (["--fps", "inf"], "--fps: must be a finite number > 0, got 'inf'"),
    (["--fps", "-30"], "--fps: must be a finite number > 0"),
    (["--feat-stride", "-8"], "--feat-stride: must be a finite number > 0, got '-8'"),
    (["--feat-stride", "0"], "--feat-stride: must be a finite number > 0"),
])
def test_infer_numeric_args(tmp_path, capsys, argv, fragment):
    from libs.commands import infer

    config, feat = _workspace(tmp_path)
    _one_error(capsys, lambda: infer.main([config, "ck.pth", str(feat), *argv]), fragment)


@pytest.mark.parametrize("out", ["feat", "dir"])
def test_infer_out_is_an_input_or_a_folder(tmp_path, capsys, out, in_process):
    from libs.commands import infer

    config, feat = _workspace(tmp_path)
    target = feat if out == "feat" else feat.parent
    fragment = "is also the input feature file" if out == "feat" else "is a folder"
    _one_error(capsys, lambda: infer.main([config, "ck.pth", str(feat), "--fps", "30", "--out", str(target)]),
               fragment)
    assert torch.load(feat).shape == (10, 16)


@pytest.mark.parametrize("tiou", ["-1", "5", "0", "nan"])
def test_tiou_must_lie_in_0_1(tmp_path, capsys, tiou):
    from libs.commands import eval_results

    _one_error(capsys, lambda: eval_results.main(["res.json", "--gt", "gt.json", "--tiou", "0.5", tiou]),
               "a tIoU threshold must lie in (0, 1]")


def test_eval_results_equal_metrics_or_checkpoint(tmp_path, capsys, in_process):
    import eval as eval_cli

    config, _ = _workspace(tmp_path)
    ckpt = tmp_path / "last.pth"
    ckpt.write_bytes(b"checkpoint bytes")
    same = str(tmp_path / "x.json")
    _one_error(capsys, lambda: eval_cli.main([config, str(ckpt), "--out", same, "--json", same]),
               "are the same file")
    _one_error(capsys, lambda: eval_cli.main([config, str(ckpt), "--out", str(ckpt)]),
               "is also the input CKPT")
    assert ckpt.read_bytes() == b"checkpoint bytes"


def test_multi_seed_name_is_plain(tmp_path, capsys):
    from libs.commands import multi_seed

    config, _ = _workspace(tmp_path)
    rc = multi_seed.main([config, "--name", "../../elsewhere", "--seeds", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "run name (--name) '../../elsewhere' cannot be used as a file name" in err, err
    assert not (tmp_path / "runs").exists()
