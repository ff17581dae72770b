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

from typing import Callable

import numpy as np
import pytest
import torch

from tests.bad_input_setups import (
    broken_h5_store, ckpt_bytes, ckpt_missing, ckpt_no_weights, ckpt_other_config, ckpt_unsafe,
    conv_cuda_on_cpu, cuda_device, edit_json, ext_scores_without_videos, feats_array, feats_bytes,
    first_ann, inf_feats, json_text, missing_config, missing_feature_file, missing_feature_folder,
    misspelt_yaml_key, model_unknown_block, nan_feats, nms_cuda_on_cpu, override, rename_videos,
    results, results_text, scan_cuda_on_cpu, set_cfg,
)
from tests.bad_input_setups_hostile import (
    BOMB, config_plus, deep_annotations, duplicate_video_id, eval_output, ext_scores, fifo_config,
    fifo_results, gt_folder, log_txt_symlink, npy_features, overwrite_through_symlink,
    overwrite_unmarked, raw_file, rename_vid1, run_folder_locked, run_name, synthetic_absolute_id,
)
from tests.bad_input_workspace import Case, CLI_ERRORS, DIM, Workspace


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
