"""The catalogue of bad inputs: each one gives ONE clear error naming the culprit, and exit 2.

Every row of `CASES` is (case name, entry point, setup, expected message fragments):
  - entry point "train" / "eval" / "eval_results": the CLI's `main(argv)` runs in-process on a
    tiny dataset (7 videos of 30 s, 16-d features, a 2-level conv detector); the test asserts
    exit status 2, that the last `error: ...` message contains every fragment, and that no
    traceback was printed;
  - entry point "call": a library call that must raise an exception type the CLIs turn into
    `error: ...` (ValueError, FileNotFoundError), whose message contains every fragment.
The setup mutates a fresh `Workspace` (config dict, annotation dict, feature files) and returns
the CLI arguments (or, for "call", the zero-argument callable). docs/errors.md lists the same
cases with their messages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import pytest
import torch
import yaml

from tests.tiny import tiny_annotations, tiny_config_dict

REPO = Path(__file__).resolve().parents[1]
DIM = 16  # feature channels of the tiny dataset
CLI_ERRORS = (ValueError, FileNotFoundError)  # what train.py / eval.py / eval_results catch


def _num_feats(duration: float, fps: float, stride: float = 8, num_frames: float = 16) -> int:
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
            n = _num_feats(value["duration"], value["fps"])
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
        ws.save_feats(vid, make(_num_feats(30.0, 30.0)))
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
        np.save(ws.feat_folder / f"{vid}.npy", make(_num_feats(30.0, 30.0)))
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


# ====================================================================== the catalogue
CASES = [
    # ---------------------------------------------------------------- config
    Case("config: misspelt key in the YAML", "train", misspelt_yaml_key,
         ("tiny.yaml", "unknown config key 'dataset.feat_foldr'", "did you mean 'dataset.feat_folder'")),
    Case("config: unknown key in --opts", "train", override("opt.epoch=3"),
         ("unknown config key 'opt.epoch'", "did you mean 'opt.epochs'")),
    Case("config: wrong type", "train", override("opt.epochs=three"),
         ("opt.epochs: expected an integer, got str 'three'",)),
    Case("config: --opts value that is not YAML", "train", override("dataset.crop_ratio=[0.9, 1.0"),
         ("override 'dataset.crop_ratio=[0.9, 1.0'", "not valid YAML", "expected ',' or ']'")),
    Case("config: wrong type in the YAML (list expected)", "train", set_cfg("model", "arch", 3),
         ("tiny.yaml", "model.arch: expected a list, got int 3")),
    Case("config: file not found", "train", missing_config, ("config file not found", "nope.yaml")),
    Case("config: unknown dataset name", "train", override("dataset.name=thumos"),
         ("dataset.name: unknown dataset 'thumos'", "available", "thumos14")),
    Case("config: misspelt model.block.args key", "train",
         override("model.block.type=dbm", "model.block.args.d_stat=8"),
         ("model.block.args.d_stat", "block 'dbm' has no argument", "did you mean 'd_state'?")),
    Case("config: wrong type in model.block.args", "train",
         override("model.block.type=dbm", "model.block.args.d_state=big"),
         ("model.block.args.d_state: expected int (block 'dbm'), got str 'big'",)),
    Case("config: unknown block type", "train", override("model.block.type=mamba2"),
         ("model.block.type", "'mamba2'", "available", "dbm", "window_attn")),
    Case("config: max_seq_len not divisible by the model's divisor", "train",
         override("dataset.max_seq_len=100", "model.block.type=window_attn", "model.n_mha_win_size=9"),
         ("dataset.max_seq_len 100", "multiple of", "size divisor 16")),
    Case("config: --device cuda without a GPU", "train", cuda_device,
         ("--device cuda", "no CUDA GPU")),
    # ---------------------------------------------------------------- annotation JSON
    Case("annotations: file not found", "train", override("dataset.json_file=/nonexistent/anno.json"),
         ("annotation file not found", "/nonexistent/anno.json")),
    Case("annotations: not JSON", "train", json_text('{"database": {"vid0": '),
         ("anno.json' is not valid JSON: Expecting value",)),
    Case("annotations: no 'database'", "train", json_text('{"version": "1.3", "taxonomy": []}'),
         ("anno.json", "'database'")),
    Case("annotations: segment with end <= start", "train",
         edit_json(lambda db: first_ann(db, segment=[9.0, 4.0]), name="thumos14"),
         ("anno.json", "video 'vid1'", "[9.0, 4.0]", "end <= start")),
    Case("annotations: segment outside the video", "train",
         edit_json(lambda db: first_ann(db, segment=[-8.0, -2.0])),
         ("anno.json", "video 'vid1'", "[-8.0, -2.0]", "before the video starts")),
    Case("annotations: segment not two numbers", "train",
         edit_json(lambda db: first_ann(db, segment=[1.0, "9"])),
         ("anno.json", "video 'vid1'", "segment")),
    Case("annotations: label without label_id", "train",
         edit_json(lambda db: db["vid1"]["annotations"][0].pop("label_id")),
         ("anno.json", "video 'vid1' annotation 0", "label 'Jump' has no 'label_id'")),
    Case("annotations: one label with two label_ids", "train",
         edit_json(lambda db: first_ann(db, label="Run")),  # "Run" is label_id 1 elsewhere
         ("anno.json", "video 'vid1' annotation 0", "label 'Run' with label_id 0 contradicts")),
    Case("annotations: video entry not an object", "train",
         edit_json(lambda db: db.update(vid3=["training", 30.0])),
         ("anno.json", "video 'vid3' must be an object, got list")),
    Case("annotations: label_id outside [0, num_classes)", "train",
         edit_json(lambda db: [a.update(label_id=7) for v in db.values() for a in v["annotations"]
                               if a["label"] == "Run"]),
         ("anno.json", "label_id values must lie in [0, 2)", "'Run': 7")),
    Case("annotations: labels != dataset.num_classes", "train", override("dataset.num_classes=3"),
         ("anno.json", "2 action labels", "dataset.num_classes = 3")),
    Case("annotations: video without fps", "train", edit_json(lambda db: db["vid2"].pop("fps")),
         ("anno.json", "video 'vid2'", "'fps'", "dataset.default_fps")),
    Case("annotations: fps not a positive number", "train",
         edit_json(lambda db: db["vid2"].update(fps="30")),
         ("anno.json", "video 'vid2'", "'fps' must be a positive number, got '30'")),
    Case("annotations: empty split", "train", override("dataset.train_split=[train]"),
         ("anno.json", "no video", "['train']", "'training'", "'validation'")),
    # ---------------------------------------------------------------- features
    Case("features: folder not found", "train", missing_feature_folder,
         ("feature folder not found", "no_such_folder")),
    Case("features: one-file HDF5 store that is not HDF5", "train", broken_h5_store,
         ("feats.h5", "cannot be read as HDF5")),
    Case("features: file missing", "train", missing_feature_file,
         ("video 'vid2'", "vid2.pt", "1 of 4 videos")),
    Case("features: empty file", "train", feats_bytes("vid1", lambda b: b""),
         ("vid1.pt", "empty (0 bytes)")),
    Case("features: truncated file", "train", feats_bytes("vid1", lambda b: b[: len(b) // 2]),
         ("vid1.pt", "cannot be read")),
    Case("features: corrupt file", "train", feats_bytes("vid1", lambda b: b"\x00garbage" * 50),
         ("vid1.pt", "cannot be read")),
    Case("features: corrupt file read by a DataLoader worker", "train",
         feats_bytes("vid1", lambda b: b"\x00garbage" * 50, workers=1),
         ("vid1.pt", "cannot be read")),
    Case("features: NaN values", "train", feats_array("vid3", nan_feats),
         ("vid3.pt", "NaN or Inf")),
    Case("features: Inf values", "train", feats_array("vid0", inf_feats),
         ("vid0.pt", "NaN or Inf")),
    Case("features: channels != dataset.input_dim", "train",
         feats_array("vid2", lambda t: np.zeros((t, 8), np.float32)),
         ("vid2.pt", "8 channels", "dataset.input_dim = 16")),
    Case("features: stored C x T instead of T x C", "train",
         feats_array("vid2", lambda t: np.zeros((DIM, t), np.float32)),
         ("vid2.pt", "stored as C x T?")),
    Case("features: video shorter than one feature (0 rows)", "train",
         feats_array("vid2", lambda t: np.zeros((0, DIM), np.float32)),
         ("vid2.pt", "0 features", "shorter than one feature")),
    # ---------------------------------------------------------------- checkpoints (eval.py)
    Case("checkpoint: from another config (shape mismatch per key)", "eval", ckpt_other_config,
         ("model.pth", "weights do not fit", "in the checkpoint", "in the model", "shape (16,")),
    Case("checkpoint: corrupt file", "eval", ckpt_bytes(lambda b: b"\x00not a zip" * 10),
         ("model.pth", "cannot read checkpoint")),
    Case("checkpoint: truncated file", "eval", ckpt_bytes(lambda b: b[: len(b) // 3]),
         ("model.pth", "cannot read checkpoint")),
    Case("checkpoint: pickles a custom object (unsafe)", "eval", ckpt_unsafe,
         ("unsafe.pth", "weights_only")),
    Case("checkpoint: no model weights inside", "eval", ckpt_no_weights,
         ("other.pth", "no model weights found", "model_ema")),
    Case("checkpoint: not found", "eval", ckpt_missing, ("checkpoint not found", "missing.pth")),
    Case("external scores: video missing (test.ext_score_file)", "eval", ext_scores_without_videos,
         ("has no entry in the external scores", "scores.json")),
    # ---------------------------------------------------------------- results JSON (eval_results)
    Case("results: unknown label", "eval_results",
         results(lambda r: r["vid4"][0].update(label="Dance")),
         ("results.json", "video 'vid4'", "unknown label 'Dance'")),
    Case("results: unknown video ids (another dataset)", "eval_results", results(rename_videos),
         ("results.json", "youtube_vid4", "anno.json", "split ['validation']")),
    Case("results: no 'results' key", "eval_results", results_text('{"version": "1.3"}'),
         ("results.json", "'results'")),
    Case("results: not JSON", "eval_results", results_text("[1, 2"),
         ("results.json", "not valid JSON")),
    Case("results: empty split", "eval_results", results(lambda r: None, split="testing"),
         ("anno.json", "no video of split ['testing']", "'training'")),
    # ---------------------------------------------------------------- library calls
    Case("ops: selective_scan(backend='cuda') on CPU tensors", "call", scan_cuda_on_cpu,
         ("selective_scan: backend 'cuda' needs CUDA tensors, got cpu tensors",)),
    Case("ops: causal_conv1d(backend='cuda') on CPU tensors", "call", conv_cuda_on_cpu,
         ("causal_conv1d: backend 'cuda' needs CUDA tensors, got cpu tensors",)),
    Case("ops: nms_1d(backend='cuda') on CPU tensors", "call", nms_cuda_on_cpu,
         ("nms_1d: backend 'cuda' cannot run on cpu tensors",)),
    Case("model: build_model with an unknown block type", "call", model_unknown_block,
         ("model.block.type", "'mamba2'", "available")),
    # ---------------------------------------------------------------- confined writes, run locks
    Case("names: video id with '..' (training)", "train", rename_vid1("../vid1"),
         ("anno.json", "video id '../vid1' cannot be used as a file name", "path separator")),
    Case("names: absolute video id (training)", "train", rename_vid1("/etc/vid1"),
         ("anno.json", "video id '/etc/vid1'", "absolute path")),
    Case("names: run name (--name) with '..'", "train", run_name("x/../../../victim"),
         ("run name (--name) 'x/../../../victim' cannot be used as a file name",)),
    Case("names: make_synthetic with an absolute video id", "call", synthetic_absolute_id,
         ("anno.json", "video id '/tmp/evil'", "absolute path")),
    Case("outputs: --overwrite of a folder train.py did not create", "train", overwrite_unmarked,
         ("refusing to overwrite", "tiny_case", ".actionmamba_run", "not a run folder")),
    Case("outputs: eval.py --json equal to --out", "eval", eval_output("metrics"),
         ("--json and --out are the same file", "res.json")),
    Case("outputs: eval.py --out is the checkpoint", "eval", eval_output("ckpt"),
         ("--out", "model.pth", "is also the input CKPT")),
    Case("outputs: log.txt is a symbolic link", "call", log_txt_symlink,
         ("log file", "log.txt is a symbolic link", "refusing to append")),
    Case("run lock: run folder held by another process", "call", run_folder_locked,
         ("in use by pid 4242 on elsewhere.example",)),
    Case("config: YAML anchors / aliases (alias bomb)", "train", config_plus(BOMB),
         ("tiny.yaml line", "YAML anchors and aliases (&name / *name) are not allowed")),
    Case("config: recursive YAML alias", "train", config_plus("loop: &l [*l]\n"),
         ("tiny.yaml line", "YAML anchors and aliases")),
    Case("config: a section given twice", "train", config_plus("opt:\n  epochs: 30\n"),
         ("tiny.yaml line", "duplicate key 'opt' (first at line")),
    Case("config: nesting deeper than 32 levels", "train", config_plus("deep: " + "[" * 100 + "]" * 100 + "\n"),
         ("tiny.yaml line", "nesting deeper than 32")),
    Case("config: a FIFO instead of a file", "train", fifo_config,
         ("fifo.yaml", "is a FIFO (named pipe), not a regular file")),
    Case("results: nested too deeply (RecursionError)", "eval_results", results_text("[" * 100000 + "]" * 100000),
         ("results.json", "nested too deeply")),
    Case("results: a key twice in one object", "eval_results",
         results_text('{"version": "1.3", "results": {}, "results": {}}'), ("results.json", "key 'results' twice")),
    Case("results: a FIFO instead of a file", "eval_results", fifo_results, ("results.json", "is a FIFO")),
    Case("annotations: a folder instead of a file", "eval_results", gt_folder,
         ("is a folder; give the path of a file",)),
    Case("annotations: nested too deeply (RecursionError)", "train", deep_annotations,
         ("anno.json", "nested too deeply")),
    # ---------------------------------------------------------------- data-side (issue 15)
    Case("annotations: a video id twice in 'database'", "train", duplicate_video_id,
         ("anno.json", "has the key 'vid1' twice in one object; keep one")),
    Case("annotations: duration x fps overflows (1e308 s)", "train",
         edit_json(lambda db: db["vid2"].update(duration=1e308)),
         ("anno.json", "video 'vid2': 'duration' 1e+308 s at 30 fps is inf frames, more than any real video")),
    Case("features: structured-dtype .npy (a record array)", "train",
         npy_features("vid2", lambda t: np.zeros((t, DIM), dtype=[("a", "f4"), ("b", "f4")])),
         ("vid2.npy", "holds an array of dtype [('a', '<f4'), ('b', '<f4')]", "plain numbers")),
    Case("external scores: a scalar instead of a list", "eval", ext_scores(0.5),
         ("scores.json", "expected a list of class scores (C finite numbers, or [[C numbers]]), got float 0.5")),
    Case("external scores: nested too deep ([[[...]]])", "eval", ext_scores([[[0.3, 0.7]]]),
         ("scores.json", "video 'vid", "got list [[[0.3, 0.7]]]")),
    Case("external scores: NaN score", "eval",
         ext_scores(text='{"results": {' + ", ".join(f'"vid{i}": [NaN, 0.5]' for i in range(7)) + "}}"),
         ("scores.json", "expected a list of class scores", "got list [nan, 0.5]")),
    Case("external scores: not JSON", "eval", ext_scores(text='{"results": '),
         ("scores.json' is not valid JSON: Expecting value",)),
    Case("raw predictions: a video listed twice", "call", raw_file(("vid4", "vid5", "vid4")),
         ("raw.pt: video 'vid4' appears twice; each video may have one entry",)),
    Case("raw predictions: more candidates than the model can produce", "call",
         raw_file(("vid4",), num=21, config={"test": {"pre_nms_topk": 10}, "model": {"arch": [2, 1, 1]}}),
         ("raw.pt: video 'vid4' holds 21 candidates, more than the model can produce (20: test.pre_nms_topk 10 x 2",)),
    Case("outputs: --overwrite of a run folder reached through a symlink", "call", overwrite_through_symlink,
         ("my_cfg_link resolves to", "victim, outside", "; refusing to touch it")),
]


def test_catalogue_is_large_and_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 20


# ====================================================================== runner


def _main(entry: str) -> Callable:
    if entry == "train":
        import train

        return train.main
    if entry == "eval":
        import eval as eval_cli

        return eval_cli.main
    from libs.commands import eval_results

    return eval_results.main


def _error_text(stderr: str, entry: str) -> str:
    """The CLI's error message: from the last line starting with '... error: ' to the end."""
    prefix = "eval_results: error: " if entry == "eval_results" else "error: "
    lines = stderr.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert starts, f"no '{prefix}' line in stderr:\n{stderr[-3000:]}"
    return "\n".join(lines[starts[-1] :])[len(prefix) :]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, in_process):
    if "--device cuda" in case.fragments and torch.cuda.is_available():
        pytest.skip("a GPU is visible: --device cuda is valid here")
    ws = Workspace(tmp_path)
    target = case.setup(ws)
    if case.entry == "call":
        with pytest.raises(Exception) as info:
            target()
        assert isinstance(info.value, CLI_ERRORS), f"{type(info.value).__name__}: {info.value}"
        message = str(info.value)
    else:
        capsys.readouterr()
        rc = _main(case.entry)(list(map(str, target)))
        err = capsys.readouterr().err
        assert rc == 2, f"exit {rc}; stderr:\n{err[-3000:]}"
        assert "Traceback" not in err, err[-3000:]
        message = _error_text(err, case.entry)
        assert err.count("error: ") == 1, err[-3000:]  # ONE error, not one per layer
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


# ====================================================================== safe loading
# Checkpoints are data, never code: ours and the published `.pth.tar` hold only tensors and plain
# containers, so `torch.load(weights_only=True)` reads them; anything needing full unpickling is
# refused before a single object of it is built.
TRIPPED: list = []


def _trip() -> str:
    TRIPPED.append("code ran")
    return "tripped"


class Tripwire:
    """Unpickling this calls `_trip`: proof of whether a loader ran code from the file."""

    def __reduce__(self):
        return (_trip, ())


def test_our_training_checkpoints_load_weights_only(tmp_path, capsys, in_process):
    import train
    from libs.engine.checkpoint import load_model_weights

    ws = Workspace(tmp_path)
    ws.cfg["opt"]["ckpt_freq"] = 1
    assert train.main(ws.train()) == 0, capsys.readouterr().err[-3000:]
    run = tmp_path / "runs" / "tiny_case"
    files = sorted(run.glob("*.pth"))  # every checkpoint kind the engine writes
    assert {"epoch_001.pth", "epoch_002.pth", "last.pth"} <= {p.name for p in files}
    for path in files:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert {"model", "model_ema", "optimizer", "scheduler", "config", "rng"} <= set(state)
        weights, meta = load_model_weights(path)
        assert meta["format"] == "ours" and meta["weights"] == "model_ema" and weights


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_published_pth_tar_loads_weights_only(tmp_path, legacy, capsys, in_process):
    """The layout of ActionFormer / video-mamba-suite `save_checkpoint`, DataParallel prefixes,
    real optimizer and scheduler state; both torch.save formats (zip since torch 1.6, legacy)."""
    from libs.core.config import load_config
    from libs.engine.checkpoint import load_model_weights, load_weights
    from libs.modeling import build_model

    ws = Workspace(tmp_path)
    cfg = load_config(ws.config())
    model = build_model(cfg.model, cfg.train, cfg.test)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    for p in model.parameters():  # one step, so the optimizer state holds tensors (exp_avg, step)
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    published = {
        "epoch": 35,
        "state_dict": prefixed,
        "scheduler": scheduler.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state_dict_ema": prefixed,
    }
    path = tmp_path / "epoch_035.pth.tar"
    torch.save(published, path, _use_new_zipfile_serialization=not legacy)

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert set(loaded) == set(published) and loaded["epoch"] == 35
    weights, meta = load_model_weights(path)
    assert meta == {"format": "published", "weights": "state_dict_ema", "epoch": 35}
    fresh = build_model(cfg.model, cfg.train, cfg.test)
    load_weights(fresh, weights, source=str(path))
    torch.testing.assert_close(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    if not legacy:  # and the CLI evaluates it
        import eval as eval_cli

        assert eval_cli.main(ws.eval(str(path))) == 0, capsys.readouterr().err[-3000:]


def test_checkpoint_needing_full_unpickling_is_refused_without_running_code(tmp_path):
    from libs.engine.checkpoint import load_checkpoint

    path = tmp_path / "unsafe.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": Tripwire()}, path)
    TRIPPED.clear()
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, CLI_ERRORS)  # train.py / eval.py print it as `error: ...`
    message = str(info.value)
    assert str(path) in message and "weights_only" in message, message
    assert TRIPPED == []  # refused before anything in the file was called
    torch.load(path, weights_only=False)  # the trip wire works: full unpickling runs code
    assert TRIPPED == ["code ran"]
    TRIPPED.clear()


def test_unsafe_opt_in_is_explicit_and_the_refusal_says_how(tmp_path):
    from libs.engine.checkpoint import load_checkpoint

    path = tmp_path / "unsafe.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "hook": Tripwire()}, path)
    TRIPPED.clear()
    with pytest.raises(ValueError, match="allow_unsafe") as info:
        load_checkpoint(path)  # default: refused, and the message names the way out
    assert "trust" in str(info.value) and TRIPPED == []
    state = load_checkpoint(path, allow_unsafe=True)
    assert state["hook"] == "tripped" and TRIPPED == ["code ran"]
    TRIPPED.clear()
