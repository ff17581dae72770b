"""tools/prepare_features.py: `join` (multi-part archives) and `verify` (feature folder checks)."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from libs.commands import prepare_features as pf

REPO = Path(__file__).resolve().parents[1]


def _annotations(n: int = 6) -> dict:
    acts = [{"label": "a", "label_id": 0, "segment": [2.0, 25.0]}]
    return {
        "database": {
            f"v{i}": {"subset": "training", "duration": 30.0, "fps": 30.0, "annotations": acts}
            for i in range(n)
        }
    }


@pytest.fixture
def folder(tmp_path) -> tuple[Path, Path]:
    """6 clean videos of 16-d features every 8 frames (clip 16), as make_synthetic writes them."""
    from libs.commands.make_synthetic import make_synthetic

    json_file = tmp_path / "anno.json"
    json_file.write_text(json.dumps(_annotations()))
    make_synthetic(
        str(json_file), str(tmp_path / "feats"), dim=16, feat_stride=8, num_frames=16, ext=".npy"
    )
    return json_file, tmp_path / "feats"


def _verify(json_file, feats, *extra) -> int:
    return pf.main(
        [
            "verify",
            str(feats),
            "--gt",
            str(json_file),
            "--file-ext",
            ".npy",
            "--input-dim",
            "16",
            "--feat-stride",
            "8",
            "--num-frames",
            "16",
            *extra,
        ]
    )


def test_verify_clean_folder_passes(folder, capsys):
    assert _verify(*folder) == 0
    out = capsys.readouterr().out
    assert (
        "OK: nothing that would break training" in out
        and "usable" in out
        and "6  of 6 videos" in out
    )


def test_verify_reports_every_problem(folder, capsys):
    json_file, feats = folder
    x = np.load(feats / "v1.npy")
    x[3, 5] = np.nan
    np.save(feats / "v1.npy", x)  # NaN
    np.save(feats / "v2.npy", np.zeros((111, 8), np.float32))  # wrong dim
    (feats / "v3.npy").unlink()  # missing
    np.save(feats / "v4.npy", np.load(feats / "v4.npy")[:40])  # too short for 30 s
    (feats / "v5.npy").write_bytes(b"\x93NUMPY garbage")  # corrupt
    np.save(feats / "stray.npy", np.zeros((3, 16), np.float32))  # not in the JSON
    assert _verify(json_file, feats, "--list") == 1
    out = capsys.readouterr().out
    table = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "v1: 1 of 1776 values, first nan at feature 3, channel 5" in table["NaN / Inf values"]
    assert "v2: 8 channels, expected 16" in table["wrong channel count"]
    assert "v3" in table["missing file"] and "v5" in table["unreadable file"]
    assert (
        "warning" in table["too short for duration"]
        and "v4: 40 features cover 10.9 s of 30.0 s" in out
    )
    assert "info" in table["not in the annotations"] and "stray.npy" in out
    assert "fps/stride mismatch" not in out  # one short video is not a global mismatch
    assert "FAILED: 4 problem(s)" in out


def test_verify_detects_a_stride_mismatch(folder, capsys):
    assert _verify(*folder, "--feat-stride", "4") == 1  # the features are every 8 frames
    out = capsys.readouterr().out
    assert "fps/stride mismatch" in out and "6 of 6 videos" in out and "looks like 8" in out


def test_verify_cli_with_config_naming(tmp_path):
    """--config gives prefix / suffix / extension / dim / stride / splits (custom_example.yaml)."""
    from libs.commands.make_synthetic import make_synthetic

    config = REPO / "configs" / "custom_example.yaml"
    make_synthetic(
        str(REPO / "data/custom_example/annotations.json"),
        str(tmp_path),
        dim=64,
        feat_stride=8,
        num_frames=16,
        file_prefix="kitchen_",
        feature_type="_r21d",
        ext=".npy",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "tools/prepare_features.py",
            "verify",
            str(tmp_path),
            "--config",
            str(config),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "20  of 20 videos" in proc.stdout
    (tmp_path / "kitchen_cam01_0000_r21d.npy").unlink()
    proc = subprocess.run(
        [
            sys.executable,
            "tools/prepare_features.py",
            "verify",
            str(tmp_path),
            "--config",
            str(config),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "kitchen_cam01_0000_r21d.npy" in proc.stdout


@pytest.fixture
def archive(tmp_path) -> tuple[Path, bytes]:
    """A .tar.gz of three small files (random content, so gzip cannot shrink it away)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("feats/a.npy", "feats/b.npy", "README.txt"):
            data = rng.bytes(3000)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return tmp_path, buf.getvalue()


def _split(data: bytes, folder: Path, n: int) -> list[Path]:
    size = -(-len(data) // n)
    parts = [folder / f"feats.tar.gz.part{i + 1}" for i in range(n)]  # part1 ... part11
    for i, part in enumerate(parts):
        part.write_bytes(data[i * size : (i + 1) * size])
    return parts


def test_join_in_natural_order_with_checksum(archive, capsys):
    folder, data = archive
    parts = _split(data, folder, 11)
    sha = hashlib.sha256(data).hexdigest()
    shuffled = [str(p) for p in parts[::-1]]  # natural order is restored: part2 before part10
    assert pf.main(["join", *shuffled, "--out", str(folder / "out"), "--sha256", sha]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {sha}" in out and "sha256 matches" in out and "extracted 3 files" in out
    assert out.index("part10") > out.index("part9 ")
    assert (folder / "out" / "feats" / "b.npy").stat().st_size == 3000

    # one prefix instead of the list; a wrong checksum is one error line, exit 2, nothing extracted
    assert (
        pf.main(
            [
                "join",
                str(folder / "feats.tar.gz.part"),
                "--out",
                str(folder / "out2"),
                "--sha256",
                "0" * 64,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and err.count("error: ") == 1 and "Nothing was extracted" in err
    assert not (folder / "out2").exists()


def test_join_truncated_or_missing_parts(archive, capsys):
    folder, data = archive
    truncated = folder / "cut.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    assert pf.main(["join", str(truncated), "--out", str(folder / "o1")]) == 2
    err = capsys.readouterr().err
    assert "archive truncated or corrupt" in err and "cut.tar.gz" in err
    assert err.count("error: ") == 1 and "Nothing was extracted" in err  # one line, not two
    assert list((folder / "o1").iterdir()) == []  # no torn file, no staging folder

    parts = _split(data, folder, 4)
    assert (
        pf.main(["join", str(parts[0]), str(parts[1]), str(parts[3]), "--out", str(folder / "o2")])
        == 2
    )
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and err.count("error") == 1  # not "error: ... zlib.error:"
    assert (
        pf.main(["join", str(folder / "nope.part1"), str(parts[0]), "--out", str(folder / "o3")])
        == 2
    )
    err = capsys.readouterr().err
    assert "archive part(s) not found: [" in err and "nope.part1" in err


def test_verify_reads_one_hdf5_store_and_flags_a_1d_array(folder, capsys):
    """The library's raw reader: one .h5 file (key = prefix + id), a missing key, a 1-D array."""
    import h5py

    json_file, feats = folder
    store = feats.parent / "all.h5"
    with h5py.File(store, "w") as fid:
        for i in range(4):
            fid[f"v{i}"] = np.load(feats / f"v{i}.npy")
        fid["v4"] = np.zeros(16, np.float32)  # 1-D: not T x C
    assert _verify(json_file, store, "--list") == 1  # v5 has no key
    out = capsys.readouterr().out
    table = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "v5: expected key 'v5' in" in table["missing file"]
    assert "v4: shape (16,)" in table["not a T x C array"]
    assert "4  of 6 videos" in out and "not in the annotations" not in out


def test_video_id_of_inverts_feature_path():
    from libs.datasets.features import feature_path, video_id_of

    name = Path(feature_path("f", "vid_1", "kitchen_", "_r21d", ".npy")).name
    assert video_id_of(name, "kitchen_", "_r21d", ".npy") == "vid_1"
    assert video_id_of("kitchen__r21d.npy", "kitchen_", "_r21d", ".npy") is None  # empty id
    assert video_id_of("vid_1_r21d.npy", "kitchen_", "_r21d", ".npy") is None
    assert video_id_of("kitchen_vid_1.pt", "kitchen_", "_r21d", ".npy") is None


def test_verify_judges_finiteness_as_training_reads_it(folder, capsys):
    """A float64 value beyond float32's range is Inf once the loader casts it: an error here too."""
    json_file, feats = folder
    x = np.load(feats / "v2.npy").astype(np.float64)
    x[5, 1] = 1e300
    np.save(feats / "v2.npy", x)
    assert _verify(json_file, feats) == 1
    assert "v2: 1 of 1776 values, first inf at feature 5, channel 1" in capsys.readouterr().out


def test_join_disk_full_is_one_error_and_leaves_no_torn_file(archive, capsys, monkeypatch):
    """ENOSPC half-way through a member: one `error:` line, exit 2, nothing left in --out."""
    import errno

    folder, data = archive
    (folder / "a.tar.gz").write_bytes(data)
    out = folder / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")  # what was there before stays untouched
    real_makefile = tarfile.TarFile.makefile

    def full_disk(self, tarinfo, targetpath):
        if tarinfo.name.endswith("b.npy"):
            Path(targetpath).write_bytes(b"torn")  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_makefile(self, tarinfo, targetpath)

    monkeypatch.setattr(tarfile.TarFile, "makefile", full_disk)
    assert pf.main(["join", str(folder / "a.tar.gz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err
    assert "No space left on device" in err and str(out) in err and "Nothing was extracted" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_join_out_is_a_file(archive, capsys):
    folder, data = archive
    (folder / "a.tar.gz").write_bytes(data)
    target = folder / "taken"
    target.write_text("x")
    assert pf.main(["join", str(folder / "a.tar.gz"), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and err.count("error: ") == 1
    assert target.read_text() == "x"


def test_join_renames_into_place_over_an_existing_tree(archive, capsys):
    """A second join into the same folder replaces the files; no staging folder remains."""
    folder, data = archive
    (folder / "a.tar.gz").write_bytes(data)
    out = folder / "out"
    for _ in range(2):
        assert pf.main(["join", str(folder / "a.tar.gz"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "feats"]
    assert (out / "feats" / "a.npy").stat().st_size == 3000
    assert "extracted 3 files" in capsys.readouterr().out


def test_verify_reports_string_fps_overflowing_duration_and_record_arrays(folder, capsys):
    """What training refuses is a problem here too (no false OK, no traceback)."""
    json_file, feats = folder
    anno = _annotations()
    anno["database"]["v1"]["fps"] = "30"  # a string: not a number for training either
    anno["database"]["v2"]["duration"] = 1e308  # overflows duration x fps
    json_file.write_text(json.dumps(anno))
    np.save(feats / "v3.npy", np.zeros((111, 16), dtype=[("a", "f4"), ("b", "f4")]))
    assert _verify(json_file, feats, "--list") == 1
    out = capsys.readouterr().out
    assert "error: bad fps / duration: v1: 'fps' must be a positive number, got '30'" in out
    assert "error: bad fps / duration: v2: 'duration' 1e+308 s at 30 fps is inf frames" in out
    assert "error: not plain numbers: v3: dtype [('a', '<f4'), ('b', '<f4')], shape (111, 16)" in out
    assert "FAILED: 3 problem(s)" in out and "3  of 6 videos" in out


def test_verify_without_annotations_and_missing_parts_are_one_error_line(tmp_path, capsys):
    assert pf.main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1
    assert "verify needs the annotations: --config CONFIG or --gt ANNOTATIONS.json" in err
    assert pf.main(["join", str(tmp_path / "feats.tar.part"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no archive parts found: " in err and "feats.tar.part*" in err and err.count("error: ") == 1


def test_verify_default_fps_replaces_a_bad_json_fps_and_a_bad_store_is_named(folder, capsys):
    json_file, feats = folder
    anno = _annotations()
    anno["database"]["v1"]["fps"] = None  # training ignores it under dataset.default_fps
    json_file.write_text(json.dumps(anno))
    assert _verify(json_file, feats, "--default-fps", "30") == 0
    assert "OK: nothing that would break training" in capsys.readouterr().out
    store = feats.parent / "bad.h5"
    store.write_text("not HDF5")
    assert _verify(json_file, store) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and f"feature file {store}: cannot be read as HDF5 (" in err


def test_join_rename_failure_lists_what_is_in_place(archive, capsys):
    """A file where the archive has a folder: the complete files already renamed are listed."""
    folder, data = archive
    (folder / "a.tar.gz").write_bytes(data)
    out = folder / "out"
    out.mkdir()
    (out / "feats").write_text("a file, not a folder")
    assert pf.main(["join", str(folder / "a.tar.gz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "cannot write the extracted files into" in err
    assert "1 complete file(s) were already moved into place: ['README.txt']" in err
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "feats"]  # no staging folder left
    assert (out / "feats").read_text() == "a file, not a folder"


def test_join_removes_the_staging_folder_of_a_killed_join_only(archive, capsys):
    """kill -9 during a join leaves `.extracting-<pid>-*`: the next join removes it (its pid is
    gone) but leaves a live join's staging folder alone."""
    folder, data = archive
    (folder / "a.tar.gz").write_bytes(data)
    out = folder / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".extracting-{dead.pid}-x1"
    (stale / "feats").mkdir(parents=True)
    (stale / "feats" / "a.npy").write_bytes(b"torn")
    live = out / f".extracting-{os.getpid()}-x2"  # this test's own process: alive
    live.mkdir()
    assert pf.main(["join", str(folder / "a.tar.gz"), "--out", str(out)]) == 0
    assert f"removed {stale}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(["README.txt", "feats", live.name])
    assert (out / "feats" / "a.npy").stat().st_size == 3000
