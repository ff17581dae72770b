"""The 12 paper configs (reference-spec §2.3), the run_all scripts and tools/paper_table.py."""
import json
import os
import re
import subprocess

import pytest
import torch

from libs.core.config import load_config, window_sizes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEMS = {
    "thumos": "thumos_internvideo2_6b",
    "anet": "anet_internvideo2_6b",
    "hacs": "hacs_internvideo2_6b",
    "fineaction": "fineaction_internvideo2_1b",
}
BLOCK_TYPES = {"winattn": "window_attn", "vim": "vim", "dbm": "dbm"}
CONFIGS = [(ds, blk) for ds in STEMS for blk in BLOCK_TYPES]
TIOU_10 = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
RANGE_6 = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
RANGE_8 = RANGE_6[:5] + ((64, 128), (128, 256), (256, 10000))

# Published values (VMS configs merged over DEFAULTS), per dataset; dotted keys into our schema.
EXPECTED = {
    "thumos": {
        "dataset.name": "thumos14", "dataset.train_split": ("validation",), "dataset.val_split": ("test",),
        "dataset.json_file": "./data/thumos/annotations/thumos14.json", "dataset.file_prefix": "",
        "dataset.feature_type": "_spatial_feature", "dataset.file_ext": ".pt", "dataset.input_dim": 3200,
        "dataset.num_classes": 20, "dataset.feat_stride": 4, "dataset.num_frames": 16, "dataset.default_fps": None,
        "dataset.downsample_rate": 1, "dataset.max_seq_len": 2304, "dataset.feat_sampling": "variable",
        "dataset.tiou_thresholds": (0.3, 0.4, 0.5, 0.6, 0.7), "loader.batch_size": 2,
        "model.arch": (2, 2, 5), "model.regression_range": RANGE_6, "model.max_buffer_len_factor": 6.0,
        "model.n_mha_win_size": 19, "model.embd_dim": 512, "model.fpn_dim": 512, "model.head_dim": 512,
        "train.init_loss_norm": 100, "train.loss_weight": 1.0, "train.label_smoothing": 0.0,
        "test.max_seg_num": 200, "test.nms_sigma": 0.5, "test.voting_thresh": 0.7, "test.duration_thresh": 0.05,
        "test.multiclass_nms": True, "test.ext_score_file": None,
        "opt.learning_rate": 1e-4, "opt.epochs": 45, "output_folder": "./ckpt_thumos",
    },
    "anet": {
        "dataset.name": "anet", "dataset.train_split": ("training",), "dataset.val_split": ("validation",),
        "dataset.json_file": "./data/anet/annotations/anet1.3_tsp_filtered.json", "dataset.file_prefix": "v_",
        "dataset.feature_type": "_spatial_pool_feature_6", "dataset.file_ext": ".pt", "dataset.input_dim": 3200,
        "dataset.num_classes": 1, "dataset.feat_stride": 8, "dataset.num_frames": 16, "dataset.default_fps": 30,
        "dataset.downsample_rate": 1, "dataset.max_seq_len": 192, "dataset.feat_sampling": "resize",
        "dataset.tiou_thresholds": TIOU_10, "loader.batch_size": 16,
        "model.arch": (2, 2, 5), "model.regression_range": RANGE_6, "model.max_buffer_len_factor": 1.0,
        "model.n_mha_win_size": (7, 7, 7, 7, 7, -1), "model.embd_dim": 256, "model.fpn_dim": 256,
        "model.head_dim": 256, "train.init_loss_norm": 200, "train.loss_weight": 2.0, "train.label_smoothing": 0.1,
        "test.max_seg_num": 100, "test.nms_sigma": 0.75, "test.voting_thresh": 0.9, "test.duration_thresh": 0.001,
        "test.multiclass_nms": False,
        "test.ext_score_file": "./data/anet/annotations/anet_UMTv2_6B_k710+K40_f16_frozenTuning.json_converted.json",
        "opt.learning_rate": 1e-3, "opt.epochs": 10, "output_folder": "./ckpt_anet",
    },
    "hacs": {
        "dataset.name": "hacs", "dataset.train_split": ("training",), "dataset.val_split": ("validation",),
        "dataset.json_file": "./data/hacs/annotations/HACS_segments_v1.1.1_af.json", "dataset.file_prefix": "v_",
        "dataset.feature_type": "_spatial_pool_feature_6", "dataset.file_ext": ".pt", "dataset.input_dim": 3200,
        "dataset.num_classes": 1, "dataset.feat_stride": 8, "dataset.num_frames": 16, "dataset.default_fps": 30,
        "dataset.downsample_rate": 1, "dataset.max_seq_len": 2304, "dataset.feat_sampling": "variable",
        "dataset.tiou_thresholds": TIOU_10, "loader.batch_size": 16,
        "model.arch": (2, 2, 5), "model.regression_range": RANGE_6, "model.max_buffer_len_factor": 1.0,
        "model.n_mha_win_size": (25, 25, 25, 25, 25, -1), "model.embd_dim": 256, "model.fpn_dim": 256,
        "model.head_dim": 256, "train.init_loss_norm": 400, "train.loss_weight": 1.0, "train.label_smoothing": 0.1,
        "test.max_seg_num": 100, "test.nms_sigma": 0.75, "test.voting_thresh": 0.7, "test.duration_thresh": 0.1,
        "test.multiclass_nms": False,
        "test.ext_score_file": "./data/hacs/annotations/hacs_UMTv2_6B_k710+K40_f16_frozenTuning.json_converted.json",
        "opt.learning_rate": 1e-3, "opt.epochs": 20, "output_folder": "./ckpt_hacs",
    },
    "fineaction": {
        "dataset.name": "fineaction", "dataset.train_split": ("training",), "dataset.val_split": ("validation",),
        "dataset.json_file": "./data/fineaction/annotations/fineaction_annotations_gt_filter.json",
        "dataset.file_prefix": "", "dataset.feature_type": "_spatial_pool_feature_5", "dataset.file_ext": ".pt",
        "dataset.input_dim": 1408, "dataset.num_classes": 106, "dataset.feat_stride": 4, "dataset.num_frames": 16,
        "dataset.default_fps": 30, "dataset.downsample_rate": 2, "dataset.max_seq_len": 2304,
        "dataset.feat_sampling": "variable", "dataset.tiou_thresholds": TIOU_10,
        "dataset.ignore_videos": ("v_00004011", "v_00006080", "v_00002783"), "loader.batch_size": 16,
        "model.arch": (2, 2, 7), "model.regression_range": RANGE_8, "model.max_buffer_len_factor": 30.0,
        "model.n_mha_win_size": 7, "model.embd_dim": 512, "model.fpn_dim": 512, "model.head_dim": 512,
        "train.init_loss_norm": 100, "train.loss_weight": 1.0, "train.label_smoothing": 0.0,
        "test.max_seg_num": 200, "test.nms_sigma": 0.5, "test.voting_thresh": 0.7, "test.duration_thresh": 0.05,
        "test.multiclass_nms": True, "test.ext_score_file": None,
        "opt.learning_rate": 1e-3, "opt.epochs": 20, "output_folder": "./ckpt_fineaction",
    },
}
COMMON = {  # identical in all four reference configs
    "dataset.trunc_thresh": 0.5, "dataset.crop_ratio": (0.9, 1.0), "loader.num_workers": 4,
    "model.scale_factor": 2, "model.fpn_type": "identity", "model.embd_kernel_size": 3, "model.embd_with_ln": True,
    "model.fpn_with_ln": True, "model.head_kernel_size": 3, "model.head_num_layers": 3, "model.head_with_ln": True,
    "train.center_sample": "radius", "train.center_sample_radius": 1.5, "train.cls_prior_prob": 0.01,
    "train.clip_grad_l2norm": 1.0, "test.pre_nms_thresh": 0.001, "test.pre_nms_topk": 2000,
    "test.iou_threshold": 0.1, "test.min_score": 0.001, "test.nms_method": "soft", "opt.type": "AdamW",
    "opt.weight_decay": 0.05, "opt.warmup": True, "opt.warmup_epochs": 5, "opt.schedule_type": "cosine",
    "opt.decay_ssm_params": True, "opt.ema_decay": 0.999, "seed": 1234567891,
}
MAX_DIV = {"thumos": 576, "anet": 96, "hacs": 384, "fineaction": 768}  # reference-spec §2.3
ABS_PE_WINATTN = {"thumos": False, "anet": False, "hacs": True, "fineaction": False}


def _path(ds, blk):
    return os.path.join(REPO, "configs", f"{STEMS[ds]}_{blk}.yaml")


def _get(cfg, dotted):
    node = cfg
    for key in dotted.split("."):
        node = getattr(node, key)
    return node


@pytest.mark.parametrize("ds, blk", CONFIGS)
def test_config_has_published_values(ds, blk):
    cfg = load_config(_path(ds, blk))
    for key, want in {**COMMON, **EXPECTED[ds]}.items():
        got = _get(cfg, key)
        if isinstance(want, float):
            assert got == pytest.approx(want), key
        else:
            assert got == want, key
    assert cfg.dataset.feat_folder == f"./data/{ds}/features"  # placeholder the user fills in
    m = cfg.model
    assert m.block.type == BLOCK_TYPES[blk]
    if blk == "winattn":
        assert m.block.args == {"n_head": 4, "drop_path": 0.1, "proj_pdrop": 0.0}
        assert m.use_abs_pe is ABS_PE_WINATTN[ds]
    else:
        expand = 2 if blk == "vim" else 1
        assert m.block.args == {"d_state": 16, "d_conv": 4, "expand": expand, "drop_path": 0.3, "padding": "reference"}
        assert m.use_abs_pe is False  # ignored by mamba blocks; written false to say so


@pytest.mark.parametrize("ds", list(STEMS))
def test_max_seq_len_is_a_multiple_of_the_reference_divisor(ds):
    cfg = load_config(_path(ds, "dbm")).model
    strides = [cfg.scale_factor ** lvl for lvl in range(cfg.arch[2] + 1)]
    div = max(s * (w // 2) * 2 if w > 1 else s for s, w in zip(strides, window_sizes(cfg)))
    assert div == MAX_DIV[ds] and cfg.max_seq_len % div == 0


@pytest.mark.parametrize("ds", list(STEMS))
def test_the_three_blocks_share_everything_but_the_block(ds):
    cfgs = {blk: load_config(_path(ds, blk)) for blk in BLOCK_TYPES}
    for cfg in cfgs.values():
        cfg.model.block = None
        cfg.model.use_abs_pe = None
        cfg.config_path = ""
    assert cfgs["winattn"] == cfgs["vim"] == cfgs["dbm"]


# --------------------------------------------------------------------------------------------
# every config builds (once libs.modeling.build_model exists)

PARAMS = {("thumos", "dbm"): 20_340_764, ("thumos", "vim"): 21_620_252,
          ("anet", "dbm"): 6_362_889, ("fineaction", "dbm"): 20_993_140}  # reference-spec §4.8


@pytest.mark.parametrize("ds, blk", CONFIGS)
def test_config_builds_a_model(ds, blk):
    try:
        from libs.modeling import build_model
        import libs.modeling.blocks.mamba  # noqa: F401  (registers vim / dbm until blocks/__init__ does)
    except ImportError as exc:
        pytest.skip(f"libs.modeling.build_model not importable yet: {exc}")
    cfg = load_config(_path(ds, blk))
    model = build_model(cfg.model, cfg.train, cfg.test)
    n = sum(p.numel() for p in model.parameters())
    if (ds, blk) in PARAMS:
        assert n == PARAMS[(ds, blk)]
    if blk == "vim":  # the ViM init quirk survives the backbone's bias reinit
        mixer = model.backbone.stem[0].mamba
        assert torch.count_nonzero(mixer.dt_proj_b.bias) == 0 and torch.count_nonzero(mixer.dt_proj.bias) > 0
        assert torch.count_nonzero(mixer.conv1d.bias) == 0


# --------------------------------------------------------------------------------------------
# run_all scripts and the paper table


FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for train.py / eval.py; everything else runs on the real interpreter
case "$2" in
  train.py) echo "train $*" >> calls.txt
    "{real}" -c "import sys, pathlib; from libs.core.config import load_config; c = sys.argv[1]; \\
p = pathlib.Path(load_config(c).output_folder) / (pathlib.Path(c).stem + '_' + sys.argv[2]); \\
p.mkdir(parents=True, exist_ok=True); (p / 'last.pth').write_text('ckpt')" "$3" "$5" ;;
  eval.py) echo "eval $*" >> calls.txt
    test -f "$4"  # the checkpoint train.py just wrote
    while [ $# -gt 0 ]; do if [ "$1" = --json ]; then out=$2; fi; shift; done
    echo '{{"tiou": [0.5, 0.75, 0.95], "mAP": [0.6, 0.4, 0.1], "average_mAP": 0.4}}' > "$out" ;;
  *) exec "{real}" "$@" ;;
esac
"""


@pytest.mark.parametrize("ds", list(STEMS))
def test_run_all_script_dry_run(ds, tmp_path):
    """The real script in a copy of the repo layout, with train/eval faked: paths, guard, table."""
    import shutil
    import sys

    script = os.path.join(REPO, f"run_all_{ds}_mamba.sh")
    assert os.access(script, os.X_OK) and "set -euo pipefail" in open(script).read()
    shutil.copy(script, tmp_path)
    shutil.copytree(os.path.join(REPO, "configs"), tmp_path / "configs")
    (tmp_path / "tools").mkdir()
    shutil.copy(os.path.join(REPO, "tools", "paper_table.py"), tmp_path / "tools")
    shutil.copy(os.path.join(REPO, "tools", "run_all_blocks.sh"), tmp_path / "tools")
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON.format(real=sys.executable))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "PYTHONPATH": REPO}

    def run(**extra):
        return subprocess.run(["bash", f"run_all_{ds}_mamba.sh"], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True)

    done = run()
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["train", "eval"] * 3
    for call, blk in zip(calls[::2], BLOCK_TYPES):
        assert call.endswith(f"train.py configs/{STEMS[ds]}_{blk}.yaml --name {blk}")
    run_dir = tmp_path / EXPECTED[ds]["output_folder"] / f"{STEMS[ds]}_dbm_dbm"
    try:  # the fake train.py above must name its folder as the real one does
        from libs.engine.run_folder import run_folder_path
    except ImportError:
        pass
    else:
        cfg = load_config(_path(ds, "dbm"))
        assert tmp_path / run_folder_path(cfg, "dbm") == run_dir
    # the run folder comes from libs.engine.run_folder (a Path: './ckpt' is written 'ckpt')
    assert f"eval.py configs/{STEMS[ds]}_dbm.yaml {os.path.normpath(EXPECTED[ds]['output_folder'])}/" in calls[5]
    assert (run_dir / "eval_metrics.json").is_file()
    assert (tmp_path / "logs" / f"{STEMS[ds]}_vim_train.log").is_file()
    table = (tmp_path / "logs" / f"{STEMS[ds]}_table.md").read_text()
    assert table.count("| ours |") == 3 and "| 40.00 |" in table
    again = run()  # an earlier run exists: refuse before training anything
    assert again.returncode != 0 and "OVERWRITE=1" in again.stderr
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 6
    assert run(OVERWRITE="1").returncode == 0
    assert "--overwrite" in (tmp_path / "calls.txt").read_text().splitlines()[6]




def test_paper_table(tmp_path, capsys):
    from libs.commands import paper_table as pt
    paths = []
    for i, blk in enumerate(["winattn", "vim", "dbm"]):
        maps = [0.40 + 0.01 * i + 0.001 * k for k in range(10)]
        path = tmp_path / f"{blk}.json"
        path.write_text(json.dumps({"tiou": list(TIOU_10), "mAP": maps, "average_mAP": sum(maps) / 10}))
        paths.append(str(path))
    assert pt.main(paths + ["--dataset", "hacs"]) == 0
    out = capsys.readouterr().out
    assert "| ActionMamba (DBM) | paper | 64.02 | 45.71 | 13.34 | 44.56 |" in out
    assert "| ActionMamba (DBM) | ours | 42.00 | 42.50 | 42.90 | 42.45 | -2.11 |" in out
    assert out.count("| ours |") == 3 and out.count("| paper |") == 3
    with pytest.raises(SystemExit):
        pt.main(paths[:2] + ["--dataset", "thumos"])  # 2 files for 3 blocks
    assert pt.PAPER["thumos"]["winattn"]["avg"] == 71.86 and pt.PAPER["anet"]["vim"]["avg"] == 41.77
    assert pt.PAPER["fineaction"]["dbm"]["avg"] == 29.04 and pt.PAPER["hacs"]["vim"]["avg"] == 44.26
