"""tools/make_synthetic.py: file names and shapes, determinism, and a learnable in-segment signal."""
import json
import time

import numpy as np
import pytest
import torch

import libs.commands.make_synthetic as ms
from libs.core.config import DatasetCfg
from libs.datasets import build_dataset
from libs.datasets.features import load_feature_file

THUMOS_JSON = "data/thumos/annotations/thumos14.json"


def _act(label_id: int, s: float, e: float) -> dict:
    return {"label": f"class{label_id}", "label_id": label_id, "segment": [s, e]}


def _json(tmp_path, num_videos: int = 3, num_classes: int = 4, duration: float = 60.0) -> str:
    """Videos with 4 s actions every 12 s, classes cycling; the last video is shorter than one clip."""
    rng = np.random.default_rng(1)
    database = {}
    for i in range(num_videos):
        acts = [_act(int(rng.integers(num_classes)), t, t + 4.0) for t in np.arange(2.0, duration - 6, 12.0)]
        database[f"vid{i}"] = {"subset": "training" if i % 2 == 0 else "validation", "duration": duration,
                               "fps": 30.0, "annotations": acts}
    database["tiny"] = {"subset": "training", "duration": 0.2, "annotations": []}  # no fps → --fps-default
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"database": database}))
    return str(path)


def test_file_names_shapes_and_dtype(tmp_path):
    json_file = _json(tmp_path)
    out = tmp_path / "feats"
    summary = ms.make_synthetic(json_file, str(out), dim=8, feat_stride=4, num_frames=16, fps_default=25.0,
                                file_prefix="v_", feature_type="_spatial_feature", ext=".npy")
    assert summary["videos"] == 4 and summary["dim"] == 8 and summary["num_classes"] == 4
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"v_{v}_spatial_feature.npy" for v in ("tiny", "vid0", "vid1", "vid2")]
    arr = np.load(out / "v_vid0_spatial_feature.npy")
    assert arr.dtype == np.float32 and arr.shape == ((60 * 30 - 16) // 4 + 1, 8)  # T x C on disk
    assert np.load(out / "v_tiny_spatial_feature.npy").shape == (1, 8)  # shorter than one clip → 1 feature
    assert summary["features"] == 3 * arr.shape[0] + 1


def test_num_features_formula():
    assert ms.num_features(10.0, 30.0, 4, 16) == (300 - 16) // 4 + 1
    assert ms.num_features(0.1, 30.0, 4, 16) == 1


def test_deterministic_given_seed(tmp_path):
    json_file = _json(tmp_path)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        ms.make_synthetic(json_file, str(tmp_path / name), dim=8, seed=seed)
    a, b, c = (load_feature_file(str(tmp_path / n / "vid1.pt")) for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_subsets_and_max_videos(tmp_path):
    json_file = _json(tmp_path, num_videos=5)
    summary = ms.make_synthetic(json_file, str(tmp_path / "f"), dim=4, subsets=["Training"], max_videos=2)
    assert summary["videos"] == 2
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["vid0.pt", "vid2.pt"]


def test_loads_through_the_dataset(tmp_path):
    json_file = _json(tmp_path)
    ms.make_synthetic(json_file, str(tmp_path / "f"), dim=8, feat_stride=4, num_frames=16, fps_default=30.0)
    cfg = DatasetCfg(name="activitynet_format", json_file=json_file, feat_folder=str(tmp_path / "f"),
                     train_split=("training",), val_split=("validation",), feat_stride=4, num_frames=16,
                     default_fps=30.0, input_dim=8, num_classes=4, max_seq_len=512)
    ds = build_dataset(cfg, "train", is_training=False)
    assert ds.video_ids == ["vid0", "vid2", "tiny"]
    assert ds[0].feats.shape == (8, (60 * 30 - 16) // 4 + 1) and ds[2].feats.shape == (8, 1)


def _labelled_feats(json_file: str, folder: str, window: int = 1):
    """Features [N, C] of every video (moving average over `window` features) and per-feature
    classes [N] on the dataset's grid.

    Labels: the class inside a segment (away from its ramps), -1 for background at least 3
    features from any segment; boundary features in between are dropped.
    """
    with open(json_file) as f:
        database = json.load(f)["database"]
    feats, labels = [], []
    for vid, value in database.items():
        x = np.load(f"{folder}/{vid}.npy")  # [T, C]
        x = np.stack([np.convolve(c, np.ones(window) / window, mode="same") for c in x.T], axis=1)  # [T, C]
        y = np.full(len(x), -1)
        for act in value["annotations"]:
            s, e = (np.asarray(act["segment"]) * value.get("fps", 30.0) - 8) / 4
            y[max(int(s) - 3, 0): int(e) + 4] = -2
            y[int(np.ceil(s)) + 1: int(np.floor(e))] = act["label_id"]
        feats.append(x[y != -2])
        labels.append(y[y != -2])
    return np.concatenate(feats), np.concatenate(labels)  # [N, C], [N]


def test_in_segment_signal_is_learnable_but_not_trivial(tmp_path):
    dim, classes = 32, 5
    json_file = _json(tmp_path, num_videos=12, num_classes=classes, duration=120.0)
    ms.make_synthetic(json_file, str(tmp_path / "f"), dim=dim, ext=".npy", seed=3)
    x, y = _labelled_feats(json_file, str(tmp_path / "f"))
    protos = ms.class_prototypes(classes, dim, seed=3)  # [K, C]
    proj = x @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T  # [N, K]
    fg = y >= 0
    # class-prototype correlation: clearly higher inside segments than outside
    assert proj[fg, y[fg]].mean() > proj[~fg].max(axis=1).mean() + 1.0
    # one feature alone is ambiguous (not trivial) ...
    per_feature = (proj[fg].argmax(1) == y[fg]).mean()
    assert 1.0 / classes + 0.1 < per_feature < 0.97
    # ... but a linear probe on 5-feature averages, fitted on half the data, classifies the rest
    # (background + K classes) far better than the majority class
    x, y = _labelled_feats(json_file, str(tmp_path / "f"), window=5)
    design = np.c_[x, np.ones(len(x))]  # [N, C + 1]
    half = len(x) // 2
    w, *_ = np.linalg.lstsq(design[:half], np.eye(classes + 1)[y[:half] + 1], rcond=None)  # [C + 1, K + 1]
    accuracy = ((design[half:] @ w).argmax(1) - 1 == y[half:]).mean()
    majority = max((y[half:] == c).mean() for c in range(-1, classes))
    assert accuracy > majority + 0.1


def test_boundaries_ramp_smoothly(tmp_path, monkeypatch):
    for name in ("NOISE_STD", "BACKGROUND_STD", "DISTRACTOR_RATE"):
        monkeypatch.setattr(ms, name, 0.0)
    json_file = _json(tmp_path, num_videos=1)
    ms.make_synthetic(json_file, str(tmp_path / "f"), dim=16, ext=".npy")
    x = np.load(tmp_path / "f" / "vid0.npy")  # [T, C]
    start = (2.0 * 30 - 8) / 4  # first action starts at 2 s → grid 13
    energy = np.linalg.norm(x, axis=1)  # [T]
    plateau = energy[int(start) + 5]
    ramp = energy[int(start) - 2: int(start) + 3] / plateau
    assert np.all(np.diff(ramp) > 0)  # rises monotonically across the boundary
    assert ramp[0] < 0.05 and 0.05 < ramp[1] < 0.3 and 0.3 < ramp[2] < 0.7 and ramp[3] > 0.7  # over ~2 features


def test_distractors_are_weaker_than_actions(tmp_path, monkeypatch):
    monkeypatch.setattr(ms, "NOISE_STD", 0.0)
    monkeypatch.setattr(ms, "BACKGROUND_STD", 0.0)
    monkeypatch.setattr(ms, "DISTRACTOR_RATE", 0.2)
    json_file = _json(tmp_path, num_videos=1)
    summary = ms.make_synthetic(json_file, str(tmp_path / "f"), dim=16, ext=".npy")
    x, y = _labelled_feats(json_file, str(tmp_path / "f"))
    energy = np.linalg.norm(x, axis=1)
    assert summary["distractors"] > 0 and energy[y < 0].max() > 0  # bursts exist outside the segments
    assert energy[y < 0].max() < np.median(energy[y >= 0])


def test_cli_prints_one_summary_line(tmp_path, capsys):
    json_file = _json(tmp_path)
    status = ms.main(["--gt", json_file, "--out", str(tmp_path / "f"), "--input-dim", "4", "--file-ext", ".npy"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and len(lines) == 1 and "make_synthetic: 4 videos" in lines[0]


def test_all_thumos_videos_are_fast(tmp_path):
    began = time.time()
    summary = ms.make_synthetic(THUMOS_JSON, str(tmp_path / "th"), dim=64, feat_stride=16, num_frames=16,
                                feature_type="_spatial_feature")
    assert summary["videos"] == 412 and summary["num_classes"] == 20 and summary["segments"] == 3007 + 3358
    assert time.time() - began < 20.0
    assert (tmp_path / "th" / "video_test_0000004_spatial_feature.pt").is_file()


@pytest.mark.parametrize("ext", [".pt", ".npz"])
def test_other_formats_load(tmp_path, ext):
    json_file = _json(tmp_path)
    ms.make_synthetic(json_file, str(tmp_path / "f"), dim=4, ext=ext)
    assert load_feature_file(str(tmp_path / "f" / f"vid0{ext}"), input_dim=4).shape == (4, (60 * 30 - 16) // 4 + 1)


def test_cli_old_flags_write_the_same_files(tmp_path, capsys):
    json_file = _json(tmp_path)
    new = ["--gt", json_file, "--out", str(tmp_path / "new"), "--input-dim", "4", "--file-ext", ".npy",
           "--default-fps", "25", "--split", "training"]
    old = ["--json", json_file, "--out", str(tmp_path / "old"), "--dim", "4", "--ext", ".npy",
           "--fps-default", "25", "--subsets", "training"]
    assert ms.main(new) == 0 and "deprecated" not in capsys.readouterr().err
    assert ms.main(old) == 0
    err = capsys.readouterr().err
    for flag, name in (("--json", "--gt"), ("--dim", "--input-dim"), ("--ext", "--file-ext"),
                       ("--fps-default", "--default-fps"), ("--subsets", "--split")):
        assert f"{flag} is deprecated and will be removed in the next release; use {name}" in err
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(p.name for p in (tmp_path / "old").iterdir())
    for f in (tmp_path / "new").iterdir():
        assert np.array_equal(np.load(f), np.load(tmp_path / "old" / f.name))
    with pytest.raises(SystemExit):
        ms.main(["--out", str(tmp_path / "x")])
    assert "required: --gt" in capsys.readouterr().err
