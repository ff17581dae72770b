"""The tiny workspace the bad-input catalogue (tests/test_bad_inputs.py) breaks one thing of:
7 videos of 30 s, 16-d features, a 2-level conv detector, and the argv of train / eval on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
import yaml

from tests.tiny import tiny_annotations, tiny_config_dict


REPO = Path(__file__).resolve().parents[1]
DIM = 16  # feature channels of the tiny dataset
CLI_ERRORS = (ValueError, FileNotFoundError)  # what train.py / eval.py / eval_results catch


def num_feats(duration: float, fps: float, stride: float = 8, num_frames: float = 16) -> int:
    return int((duration * fps - num_frames) // stride) + 1


def _database() -> dict:
    """4 training + 3 validation videos of 30 s at 30 fps, two classes."""
    return tiny_annotations(num_videos=7, num_train=4)["database"]


class Workspace:
    """A tiny valid dataset + config in `root`; cases break one thing before the run."""

    def __init__(self, root: Path):
        self.root = root
        self.json_file = root / "anno.json"
        self.feat_folder = root / "feats"
        self.feat_folder.mkdir()
        self.annotations = {"version": "tiny", "database": _database()}
        self.write_json()
        rng = np.random.default_rng(0)
        for vid, value in self.annotations["database"].items():
            n = num_feats(value["duration"], value["fps"])
            self.save_feats(vid, rng.standard_normal((n, DIM)).astype(np.float32))  # [T, C]
        self.cfg = tiny_config_dict(self.json_file, self.feat_folder, root / "runs", {
            "dataset": {"file_ext": ".pt", "input_dim": DIM, "crop_ratio": [0.9, 1.0]},
            "train": {"clip_grad_l2norm": 1.0},
            "opt": {"learning_rate": 1e-3, "epochs": 1, "warmup_epochs": 1, "print_freq": 100},
        })

    # ------------------------------------------------------------------ files
    @property
    def db(self) -> dict:
        return self.annotations["database"]

    def write_json(self) -> None:
        self.json_file.write_text(json.dumps(self.annotations))

    def feature(self, vid: str) -> Path:
        return self.feat_folder / f"{vid}.pt"

    def save_feats(self, vid: str, feats: np.ndarray) -> None:
        torch.save(torch.from_numpy(np.ascontiguousarray(feats)), self.feature(vid))

    def config(self, name: str = "tiny.yaml") -> str:
        path = self.root / name
        path.write_text(yaml.safe_dump(self.cfg))
        return str(path)

    def checkpoint(self, name: str = "model.pth") -> str:
        """A checkpoint of the model the current config builds (our format, weights only)."""
        from libs.core.config import load_config
        from libs.modeling import build_model

        cfg = load_config(self.config("ckpt_config.yaml"))
        model = build_model(cfg.model, cfg.train, cfg.test)
        path = self.root / name
        torch.save({"model": model.state_dict(), "model_ema": model.state_dict(), "epoch": 1}, path)
        return str(path)

    # ------------------------------------------------------------------ argv
    def train(self, *opts: str, device: str = "cpu") -> list[str]:
        return [self.config(), "--name", "case", "--device", device, "--opts", *opts]

    def eval(self, ckpt: str, *opts: str) -> list[str]:
        out = ["--out", str(self.root / "res.json"), "--json", str(self.root / "m.json")]
        return [self.config(), ckpt, "--device", "cpu", *out, "--opts", *opts]


Setup = Callable[[Workspace], Union[list, Callable[[], object]]]


@dataclass(frozen=True)
class Case:
    name: str
    entry: str  # train | eval | eval_results | call
    setup: Setup
    fragments: tuple[str, ...]
