"""The tiny ActivityNet-format dataset and config that the end-to-end tests share.

Videos `vid0 ... vid{n-1}`, 30 s at 30 fps, two classes (Jump: id 0, Run: id 1); the first
`num_train` are in subset "training", the rest in "validation". The config builds a 2-level conv
model of width 16 that trains in about a second.
"""
import copy
from pathlib import Path
from typing import Optional


def tiny_annotations(num_videos: int = 7, num_train: int = 4) -> dict:
    """{"database": {...}} with two actions per video."""
    database = {}
    for i in range(num_videos):
        acts = [
            {"label": "Jump", "label_id": 0, "segment": [3.0 + i, 9.0 + i]},
            {"label": "Run", "label_id": 1, "segment": [15.0, 21.5 + 0.5 * i]},
        ]
        subset = "training" if i < num_train else "validation"
        database[f"vid{i}"] = {"subset": subset, "duration": 30.0, "fps": 30.0, "annotations": acts}
    return {"database": database}


def _merge(base: dict, changes: dict) -> dict:
    """Recursive dict update: nested sections are merged, other values replaced."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


_BASE = {
    "dataset": {
        "name": "activitynet_format",
        "train_split": ["training"],
        "val_split": ["validation"],
        "feat_stride": 8,
        "num_frames": 16,
        "input_dim": 16,
        "num_classes": 2,
        "max_seq_len": 128,
        "tiou_thresholds": [0.3, 0.5, 0.7],
    },
    "loader": {"batch_size": 2, "num_workers": 0},
    "model": {
        "embd_dim": 16,
        "fpn_dim": 16,
        "head_dim": 16,
        "arch": [1, 1, 1],
        "regression_range": [[0, 4], [4, 10000]],
        "block": {"type": "conv"},
    },
    "train": {"init_loss_norm": 10},
}


def tiny_config_dict(json_file: Path, feat_folder: Path, output_folder: Path,
                     changes: Optional[dict] = None) -> dict:
    """The tiny config as a dict (YAML-ready), with `changes` merged in section by section."""
    cfg = copy.deepcopy(_BASE)
    cfg["dataset"].update(json_file=str(json_file), feat_folder=str(feat_folder))
    cfg["output_folder"] = str(output_folder)
    return _merge(cfg, changes or {})
