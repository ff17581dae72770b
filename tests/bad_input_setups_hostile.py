"""Setups of the bad-input catalogue for issue 15's hostile inputs: confined writes, run locks,
hostile files (aliases, FIFOs, deep nesting), duplicates, overflow, dtypes, external scores and
raw prediction files."""

from __future__ import annotations

import json
import os
from typing import Callable, Union

import numpy as np
import torch

from tests.bad_input_setups import results
from tests.bad_input_workspace import num_feats, Setup, Workspace


# confined writes and run locks (issue 15) ---------------------------------------------------


def rename_vid1(new_id: str) -> Setup:
    """A training video whose id would point outside feat_folder."""
    def setup(ws: Workspace) -> list:
        ws.db[new_id] = ws.db.pop("vid1")
        ws.write_json()
        return ws.train()

    return setup


def run_name(name: str) -> Setup:
    def setup(ws: Workspace) -> list:
        argv = ws.train()
        argv[argv.index("--name") + 1] = name
        return argv

    return setup


def overwrite_unmarked(ws: Workspace) -> list:
    folder = ws.root / "runs" / "tiny_case"  # has a config.yaml but was not made by train.py
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("{}")
    return ["--overwrite", *ws.train()]


def eval_output(which: str) -> Setup:
    """--json equal to --out, or --out equal to the checkpoint."""
    def setup(ws: Workspace) -> list:
        ckpt = ws.checkpoint()
        argv = ws.eval(ckpt)
        if which == "metrics":
            argv[argv.index("--json") + 1] = argv[argv.index("--out") + 1]
        else:
            argv[argv.index("--out") + 1] = ckpt
        return argv

    return setup


def run_folder_locked(ws: Workspace) -> Callable:
    from libs.engine.run_lock import LOCK_NAME, RunLock

    (ws.root / LOCK_NAME).write_text(json.dumps({"pid": 4242, "host": "elsewhere.example"}))
    return lambda: RunLock(ws.root).acquire()


def log_txt_symlink(ws: Workspace) -> Callable:
    from libs.utils.logging import setup_logging

    (ws.root / "run").mkdir()
    (ws.root / "run" / "log.txt").symlink_to(ws.json_file)
    return lambda: setup_logging(ws.root / "run")


def synthetic_absolute_id(ws: Workspace) -> Callable:
    import libs.commands.make_synthetic as ms

    ws.db["/tmp/evil"] = ws.db.pop("vid1")
    ws.write_json()
    return lambda: ms.make_synthetic(str(ws.json_file), str(ws.root / "synth"), dim=4)


# hostile files (libs/core/safe_io.py) -----------------------------------------------------------


def config_plus(text: str) -> Setup:
    """The valid tiny config with raw YAML `text` appended (anchors, duplicates, deep nesting)."""

    def setup(ws: Workspace) -> list:
        argv = ws.train()
        with open(argv[0], "a") as f:
            f.write(text)
        return argv

    return setup


def fifo_config(ws: Workspace) -> list:
    path = ws.root / "fifo.yaml"
    os.mkfifo(path)
    return [str(path), "--name", "case", "--device", "cpu"]


def fifo_results(ws: Workspace) -> list:
    path = ws.root / "results.json"
    os.mkfifo(path)
    return [str(path), "--gt", str(ws.json_file), "--split", "validation"]


def gt_folder(ws: Workspace) -> list:
    argv = results(lambda r: None)(ws)
    return [argv[0], "--gt", str(ws.root), *argv[3:]]


def deep_annotations(ws: Workspace) -> list:
    ws.json_file.write_text('{"database": ' + "[" * 100000 + "]" * 100000 + "}")
    return ws.train()


# data-side hostile inputs (issue 15: duplicates, overflow, dtypes, external scores, raw files) --


def duplicate_video_id(ws: Workspace) -> list:
    """The JSON text lists video 'vid1' twice in 'database' (json.dumps cannot write that)."""
    items = [*ws.db.items(), ("vid1", ws.db["vid1"])]
    body = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items)
    ws.json_file.write_text('{"version": "tiny", "database": {' + body + "}}")
    return ws.train()


def npy_features(vid: str, make: Callable[[int], np.ndarray]) -> Setup:
    """Every video as .npy (dataset.file_ext), video `vid` replaced by make(T)."""

    def setup(ws: Workspace) -> list:
        for v in ws.db:
            np.save(ws.feat_folder / f"{v}.npy", torch.load(ws.feature(v)).numpy())
        np.save(ws.feat_folder / f"{vid}.npy", make(num_feats(30.0, 30.0)))
        ws.cfg["dataset"]["file_ext"] = ".npy"
        return ws.train()

    return setup


def ext_scores(value: object = None, text: str = "") -> Setup:
    """test.ext_score_file whose every video maps to `value` (or whose content is `text`)."""

    def setup(ws: Workspace) -> list:
        scores = ws.root / "scores.json"
        scores.write_text(text or json.dumps({"results": {v: value for v in ws.db}}))
        return ws.eval(ws.checkpoint(), f"test.ext_score_file={scores}")

    return setup


def raw_file(ids: tuple[str, ...], num: int = 3, config: Union[dict, None] = None) -> Setup:
    """A raw-predictions file (eval.py --save-raw layout) of videos `ids`, `num` candidates each."""

    def setup(ws: Workspace) -> Callable:
        from libs.inference.raw import RawPredictions

        videos = [{"video_id": v, "segments": torch.zeros(num, 2), "scores": torch.zeros(num),
                   "labels": torch.zeros(num, dtype=torch.long), "fps": 30.0, "feat_stride": 8.0,
                   "feat_num_frames": 16.0, "duration": 30.0} for v in ids]
        path = ws.root / "raw.pt"
        torch.save({"format": "raw_predictions", "version": 1, "videos": videos, "id_to_name": {},
                    "config": config or {}}, path)
        return lambda: RawPredictions.load(path)

    return setup


def overwrite_through_symlink(ws: Workspace) -> Callable:
    from libs.utils.paths import check_inside

    (ws.root / "out").mkdir()
    (ws.root / "victim").mkdir()
    os.symlink(ws.root / "victim", ws.root / "out" / "my_cfg_link")
    return lambda: check_inside(ws.root / "out" / "my_cfg_link", ws.root / "out", "--overwrite: run folder")


BOMB = "laughs:\n  a: &a [x, x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
