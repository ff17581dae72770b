"""Setups of the bad-input catalogue: config, annotation JSON, feature files, checkpoints,
results JSON and library calls. Each takes a `Workspace`, breaks one thing and returns the argv
(or, for library calls, a zero-argument callable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tests.bad_input_workspace import DIM, num_feats, Setup, Workspace


# ====================================================================== setups
# config ---------------------------------------------------------------------------------------


def misspelt_yaml_key(ws: Workspace) -> list:
    ws.cfg["dataset"]["feat_foldr"] = ws.cfg["dataset"].pop("feat_folder")
    return ws.train()


def set_cfg(section: str, key: str, value) -> Setup:
    def setup(ws: Workspace) -> list:
        ws.cfg[section][key] = value
        return ws.train()

    return setup


def override(*opts: str) -> Setup:
    return lambda ws: ws.train(*opts)


def missing_config(ws: Workspace) -> list:
    return [str(ws.root / "nope.yaml"), "--device", "cpu"]


def cuda_device(ws: Workspace) -> list:
    return ws.train(device="cuda")


# annotation JSON ------------------------------------------------------------------------------


def edit_json(fn: Callable[[dict], None], name: str = "activitynet_format") -> Setup:
    """Change the annotation dict (the `database` passed to fn), then train."""

    def setup(ws: Workspace) -> list:
        fn(ws.db)
        ws.write_json()
        ws.cfg["dataset"]["name"] = name
        return ws.train()

    return setup


def json_text(text: str) -> Setup:
    def setup(ws: Workspace) -> list:
        ws.json_file.write_text(text)
        return ws.train()

    return setup


def first_ann(db: dict, **kv) -> None:
    db["vid1"]["annotations"][0].update(kv)


# feature files --------------------------------------------------------------------------------


def feats_array(vid: str, make: Callable[[int], np.ndarray]) -> Setup:
    """Replace a video's features with make(T) (T = the video's feature count)."""

    def setup(ws: Workspace) -> list:
        ws.save_feats(vid, make(num_feats(30.0, 30.0)))
        return ws.train()

    return setup


def feats_bytes(vid: str, make: Callable[[bytes], bytes], workers: int = 0) -> Setup:
    """Rewrite a video's feature file from its current bytes."""

    def setup(ws: Workspace) -> list:
        path = ws.feature(vid)
        path.write_bytes(make(path.read_bytes()))
        ws.cfg["loader"]["num_workers"] = workers
        return ws.train()

    return setup


def nan_feats(t: int) -> np.ndarray:
    x = np.zeros((t, DIM), np.float32)
    x[t // 2, 3] = np.nan
    return x


def inf_feats(t: int) -> np.ndarray:
    x = np.zeros((t, DIM), np.float32)
    x[0, 0] = -np.inf
    return x


def missing_feature_file(ws: Workspace) -> list:
    ws.feature("vid2").unlink()
    return ws.train()


def missing_feature_folder(ws: Workspace) -> list:
    return ws.train(f"dataset.feat_folder={ws.root / 'no_such_folder'}")


def broken_h5_store(ws: Workspace) -> list:
    store = ws.root / "feats.h5"
    store.write_bytes(b"not an HDF5 file" * 8)
    return ws.train(f"dataset.feat_folder={store}")


# checkpoints (eval.py) ------------------------------------------------------------------------


def ckpt_other_config(ws: Workspace) -> list:
    ckpt = ws.checkpoint()  # embd/fpn/head dim 16
    return ws.eval(ckpt, "model.embd_dim=24", "model.fpn_dim=24", "model.head_dim=8")


def ckpt_bytes(make: Callable[[bytes], bytes]) -> Setup:
    def setup(ws: Workspace) -> list:
        path = Path(ws.checkpoint())
        path.write_bytes(make(path.read_bytes()))
        return ws.eval(str(path))

    return setup


class Opaque:
    """A pickled custom class: weights_only=True refuses it."""

    def __init__(self):
        self.value = 1


def ckpt_unsafe(ws: Workspace) -> list:
    path = ws.root / "unsafe.pth"
    torch.save({"model": {}, "extra": Opaque()}, path)
    return ws.eval(str(path))


def ckpt_no_weights(ws: Workspace) -> list:
    path = ws.root / "other.pth"
    torch.save({"net": {"w": torch.zeros(2)}, "epoch": 3}, path)
    return ws.eval(str(path))


def ckpt_missing(ws: Workspace) -> list:
    return ws.eval(str(ws.root / "missing.pth"))


def ext_scores_without_videos(ws: Workspace) -> list:
    scores = ws.root / "scores.json"
    scores.write_text(json.dumps({"results": {"other_video": [0.3, 0.7]}}))
    return ws.eval(ws.checkpoint(), f"test.ext_score_file={scores}")


# results JSON (tools/eval_results.py) ---------------------------------------------------------


def results(fn: Callable[[dict], None], split: str = "validation") -> Setup:
    """Perfect predictions on the validation split, changed by fn(results dict)."""

    def setup(ws: Workspace) -> list:
        res = {
            vid: [{"label": a["label"], "segment": a["segment"], "score": 0.9} for a in v["annotations"]]
            for vid, v in ws.db.items()
            if v["subset"] == "validation"
        }
        fn(res)
        path = ws.root / "results.json"
        path.write_text(json.dumps({"version": "VERSION 1.3", "results": res}))
        return [str(path), "--gt", str(ws.json_file), "--split", split, "--tiou", "0.5"]

    return setup


def rename_videos(res: dict) -> None:
    for vid in list(res):
        res[f"youtube_{vid}"] = res.pop(vid)


def results_text(text: str) -> Setup:
    def setup(ws: Workspace) -> list:
        path = ws.root / "results.json"
        path.write_text(text)
        return [str(path), "--gt", str(ws.json_file), "--split", "validation"]

    return setup


# library calls --------------------------------------------------------------------------------


def scan_cuda_on_cpu(ws: Workspace) -> Callable:
    from libs.ops import selective_scan

    u = torch.randn(1, 2, 5)
    args = (u, torch.rand(1, 2, 5), -torch.rand(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    return lambda: selective_scan(*args, backend="cuda")


def conv_cuda_on_cpu(ws: Workspace) -> Callable:
    from libs.ops import causal_conv1d

    return lambda: causal_conv1d(torch.randn(1, 2, 5), torch.randn(2, 4), backend="cuda")


def nms_cuda_on_cpu(ws: Workspace) -> Callable:
    from libs.ops import nms_1d

    return lambda: nms_1d(torch.tensor([[0.0, 1.0]]), torch.tensor([0.5]), 0.5, backend="cuda")


def model_unknown_block(ws: Workspace) -> Callable:
    from libs.core.config import load_config
    from libs.modeling import build_model

    ws.cfg["model"]["block"]["type"] = "mamba2"
    cfg = load_config(ws.config())
    return lambda: build_model(cfg.model, cfg.train, cfg.test)
