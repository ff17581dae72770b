"""tools/infer.py: detections for new videos from their feature files alone.

This module also holds `tiny_run`, a tiny trained detector shared by test_rescore.py and
test_visualize.py: 5 training + 3 validation synthetic videos (30 s, 2 classes, 16-d features
every 8 frames), the conv block at 16 channels, 15 in-process AdamW steps (mAP@0.5 near 1 on the
validation videos). It is built once per pytest session, under the session's basetemp.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import process_state_restored
from tests.tiny import tiny_annotations
from tests.tiny import tiny_config_dict as _tiny_config

REPO = Path(__file__).resolve().parents[1]
FEAT = dict(dim=16, feat_stride=8, num_frames=16, ext=".pt", seed=0)


def _annotations() -> dict:
    return tiny_annotations(num_videos=8, num_train=5)


def tiny_config_dict(root: Path) -> dict:
    changes = {
        "loader": {"batch_size": 5},
        "test": {"min_score": 0.001, "max_seg_num": 50},
        "opt": {"epochs": 1, "warmup_epochs": 0, "print_freq": 1},
    }
    return _tiny_config(root / "anno.json", root / "feats", root / "ckpt", changes)


def _train(config: Path, steps: int = 15) -> dict:
    """A few full-batch AdamW steps on the training videos; returns the model's state_dict."""
    from libs.core.config import load_config
    from libs.datasets import build_dataset, build_loader
    from libs.modeling import build_model

    cfg = load_config(str(config))
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.train, cfg.test)
    dataset = build_dataset(cfg.dataset, "train", is_training=True)
    loader = build_loader(
        dataset,
        batch_size=5,
        num_workers=0,
        is_training=True,
        max_seq_len=cfg.dataset.max_seq_len,
        size_divisor=model.size_divisor,
        generator=torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        for batch in loader:
            loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.state_dict()


def restored_process_state(monkeypatch):
    """conftest's process_state_restored, staying in the current directory."""
    return process_state_restored(monkeypatch, chdir=False)


def tiny_run(tmp_path_factory) -> dict:
    """Paths of the shared tiny run: root, json, feats, config, ckpt (trained once per session)."""
    from libs.commands.make_synthetic import make_synthetic

    root = tmp_path_factory.getbasetemp() / "tiny_run"
    paths = {
        "root": root,
        "json": root / "anno.json",
        "feats": root / "feats",
        "config": root / "tiny.yaml",
        "ckpt": root / "ckpt.pth",
    }
    if paths["ckpt"].is_file():
        return paths
    root.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(_annotations()))
    make_synthetic(str(paths["json"]), str(paths["feats"]), **FEAT)
    paths["config"].write_text(yaml.safe_dump(tiny_config_dict(root)))
    state = _train(paths["config"])
    torch.save({"model": state, "model_ema": state}, paths["ckpt"])
    return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def new_videos(tmp_path_factory) -> tuple[Path, dict]:
    """Features of two videos that are in no annotation file the config knows."""
    from libs.commands.make_synthetic import make_synthetic

    root = tmp_path_factory.mktemp("new_videos")
    database = {
        "new_a": {
            "subset": "x",
            "duration": 40.0,
            "fps": 30.0,
            "annotations": [{"label": "Jump", "label_id": 0, "segment": [5.0, 11.0]}],
        },
        "new_b": {
            "subset": "x",
            "duration": 20.0,
            "fps": 30.0,
            "annotations": [{"label": "Run", "label_id": 1, "segment": [8.0, 14.5]}],
        },
    }
    (root / "new.json").write_text(json.dumps({"database": database}))
    make_synthetic(str(root / "new.json"), str(root / "feats"), **FEAT)
    return root / "feats", database


def _tiou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (a[1] - a[0] + b[1] - b[0] - inter)


def test_cli_detects_new_videos_in_seconds_with_names_and_plots(run, new_videos, tmp_path):
    feats, database = new_videos
    out, plot = tmp_path / "det.json", tmp_path / "plots" / "timeline.png"
    args = [
        run["config"],
        run["ckpt"],
        feats / "new_a.pt",
        feats,
        "--default-fps",
        "30",
        "--out",
        out,
        "--plot",
        plot,
        "--device",
        "cpu",
    ]  # (a file and a folder: no duplicates)
    proc = subprocess.run(
        [sys.executable, "tools/infer.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data["results"]) == set(data["video_info"]) == {"new_a", "new_b"}
    for vid, entries in data["results"].items():
        duration = data["video_info"][vid]["duration"]
        # the features cover ((T - 1) * stride + num_frames) / fps: within one stride of the truth
        assert database[vid]["duration"] - 8 / 30 <= duration <= database[vid]["duration"]
        assert entries and all(e["label"] in ("Jump", "Run") for e in entries)
        assert all(0 <= e["segment"][0] <= e["segment"][1] <= duration for e in entries)
        gt = database[vid]["annotations"][0]
        best = max((e for e in entries if e["label"] == gt["label"]), key=lambda e: e["score"])
        assert _tiou(best["segment"], gt["segment"]) > 0.5, (vid, best)
    for vid in ("new_a", "new_b"):
        png = plot.with_name(f"timeline_{vid}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "new_a: 40.0 s" in proc.stdout


def test_same_detections_as_the_dataset_path(run):
    """infer's feature loading + seconds conversion == the evaluation dataset's for vid5."""
    from libs.core.config import load_config
    from libs.datasets import build_dataset
    from libs.datasets.collate import collate
    from libs.cli import load_detector
    from libs.inference import postprocess
    from libs.commands import infer

    cfg = load_config(str(run["config"]))
    model, _, _ = load_detector(cfg, str(run["ckpt"]), torch.device("cpu"))
    sample = infer.load_video(run["feats"] / "vid5.pt", cfg, fps=30.0, feat_stride=8, num_frames=16)
    ours = infer.detect(model, sample, cfg, torch.device("cpu"))

    dataset = build_dataset(cfg.dataset, "val", is_training=False)
    ref_sample = dataset[dataset.video_ids.index("vid5")]
    batch = collate([ref_sample], 128, model.size_divisor, is_training=False)
    with torch.no_grad():
        ref = postprocess(model(batch), batch.samples, cfg.test)[0]
    assert sample.video_id == "vid5" and torch.equal(sample.feats, ref_sample.feats)
    assert len(ours) == len(ref) > 0
    # the JSON says 30 s, the features cover 29.87 s: only the clamp at the end may differ
    torch.testing.assert_close(ours.segments, ref.segments.clamp(max=sample.duration))
    assert torch.equal(ours.scores, ref.scores) and torch.equal(ours.labels, ref.labels)


def test_video_ids_strip_prefix_and_suffix():
    from libs.core.config import DatasetCfg
    from libs.commands.infer import video_id_of

    dcfg = DatasetCfg(file_prefix="cam1_", feature_type="_i3d")
    assert video_id_of(Path("/x/cam1_clip07_i3d.npy"), dcfg) == "clip07"
    assert video_id_of(Path("other.pt"), dcfg) == "other"


def test_class_ids_without_annotations_and_clear_errors(run, new_videos, tmp_path, capsys):
    from libs.commands import infer

    feats, _ = new_videos
    out = tmp_path / "ids.json"
    code = infer.main(
        [
            str(run["config"]),
            str(run["ckpt"]),
            str(feats / "new_b.pt"),
            "--default-fps",
            "30",
            "--out",
            str(out),
            "--opts",
            f"dataset.json_file={tmp_path}/missing.json",
        ]
    )
    assert code == 0
    labels = {e["label"] for e in json.loads(out.read_text())["results"]["new_b"]}
    assert labels and labels <= {0, 1}

    # no dataset.default_fps in the config and no --fps
    assert infer.main([str(run["config"]), str(run["ckpt"]), str(feats / "new_b.pt")]) == 2
    assert "--default-fps" in capsys.readouterr().err
    assert (
        infer.main([str(run["config"]), str(run["ckpt"]), str(tmp_path / "nope.pt"), "--default-fps", "30"])
        == 2
    )
    assert "nope.pt" in capsys.readouterr().err
