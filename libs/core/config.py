"""The configuration schema: every knob, its default and its meaning, in one place.

YAML files on disk are merged into these dataclasses by `load_config`:
  1. the file through `libs.core.safe_io.load_yaml` (no anchors/aliases, duplicate keys or deep
     nesting), with `_base_: other.yaml` (or a list) deep-merged under it (paths relative to the
     including file; mappings merge, lists replace; see `config_merge.resolve_bases`);
  2. a recursive, strict merge (`libs.core.config_merge`): an unknown key is an error naming the
     key and the nearest valid one; values are type-checked (ints are accepted for floats, lists
     for tuples);
  3. dotted `key=value` overrides from the command line (`model.embd_dim=256`), values parsed as
     YAML scalars/lists;
  4. `_finalize`, the single place for derived fields; it first checks every value's range
     (`libs.core.config_values`: finite numbers, positive rates, capped sizes, the tIoU set), so
     a bad value is found at load time, named with the file or the --opts override it came from.
The resolved config is written next to the checkpoints (`write_config`) and stored inside every
checkpoint (`config_to_dict`).

Names follow the published code (ActionFormer / video-mamba-suite) where it has one, so its
configs read across; see docs in README "Configs".
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import yaml

from libs.core.config_merge import ConfigError, apply_override, merge, resolve_bases
from libs.core.config_files import locate_config, packaged_config_dirs
from libs.core.config_values import check_values
from libs.core.safe_io import UnsafeInputError, load_yaml
from libs.utils.io import atomic_write_text


# --------------------------------------------------------------------------------------------
# schema


@dataclass
class DatasetCfg:
    name: str = "thumos14"  # key in libs.datasets.DATASETS: thumos14 | anet | hacs | fineaction | activitynet_format
    json_file: str = ""  # ActivityNet-style annotation JSON ({"database": {video_id: {...}}})
    feat_folder: str = ""  # folder of per-video feature files, or one .h5/.hdf5 file
    file_prefix: str = ""  # feature path = feat_folder / (file_prefix + video_id + feature_type + file_ext)
    feature_type: str = ""  # file-name suffix (e.g. "_spatial_feature"), not a dict key
    file_ext: str = ".pt"  # .pt | .npy | .npz (ignored for one-file .h5 folders)
    train_split: tuple[str, ...] = ("training",)  # JSON `subset` values (case-insensitive) used for training
    val_split: tuple[str, ...] = ("validation",)  # subsets used for evaluation
    feat_stride: float = 16  # frames between consecutive features (before downsampling)
    num_frames: float = 32  # frames covered by one feature clip
    default_fps: Optional[float] = None  # overrides the JSON fps when set; else the JSON `fps` is required
    input_dim: int = 2304  # feature channels
    num_classes: int = 97  # action classes (1 = class-agnostic: every label becomes 0)
    downsample_rate: int = 1  # temporal subsampling feats[::r]; the stride becomes feat_stride * r
    max_seq_len: int = 2304  # training length (crop/pad target); also the point-buffer base
    trunc_thresh: float = 0.5  # min kept fraction of an action when cropping
    crop_ratio: Optional[tuple[float, float]] = None  # random crop ratio range for short videos
    feat_sampling: str = "variable"  # variable | resize (resize = reference force_upsampling to max_seq_len)
    ignore_videos: tuple[str, ...] = ()  # video ids skipped in every split (on top of the dataset's own list)
    tiou_thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)  # evaluation tIoU set


@dataclass
class LoaderCfg:
    batch_size: int = 8  # training batch (evaluation uses 1 video per step)
    num_workers: int = 4  # DataLoader worker processes (0 = load in the main process)


@dataclass
class BlockCfg:
    type: str = "window_attn"  # key in libs.modeling.blocks.BLOCKS: conv | window_attn | vim | dbm
    args: dict[str, Any] = field(default_factory=dict)  # forwarded verbatim to the block constructor, e.g.
    # window_attn: {n_head: 4, drop_path: 0.1, proj_pdrop: 0.0, use_rel_pe: false}
    # vim / dbm:   {d_state: 16, d_conv: 4, expand: 2 | 1, drop_path: 0.3, padding: reference | exact}
    # padding (vim / dbm): what the padded tail of a batch does to a video's outputs.
    #   reference (default, the published behaviour and checkpoints): padded steps keep their
    #     residual and the backward scan starts at the end of the padding, so a video's outputs
    #     change slightly with the amount of padding behind it;
    #   exact: each video's backward scan starts at its own last feature and padded outputs are
    #     zero, so outputs do not depend on the padding (not the paper setting: retrain).


@dataclass
class ModelCfg:
    block: BlockCfg = field(default_factory=BlockCfg)  # temporal block of the backbone
    arch: tuple[int, int, int] = (2, 2, 5)  # (#embedding convs, #stem blocks, #branch blocks); levels = arch[2] + 1
    scale_factor: int = 2  # downsampling between pyramid levels
    regression_range: tuple[tuple[float, float], ...] = (
        (0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000),
    )  # per-level [min, max] of max(left, right) distance, level-0 grid units
    n_mha_win_size: Union[int, tuple[int, ...]] = -1  # per-level window w_l (one int = every level, -1 = global)
    # window_attn: the local-attention window of level l. vim / dbm: no window (the scan sees the
    # whole video); the value only sets how test videos longer than max_seq_len are padded: to a
    # multiple of max over l of scale_factor^l * (w_l // 2) * 2, as the reference does; keep the
    # paper's value for parity.
    embd_kernel_size: int = 3  # kernel of the embedding convs
    embd_dim: int = 512  # channels of the embedding and backbone
    embd_with_ln: bool = True  # LayerNorm after each embedding conv (then the conv has no bias)
    fpn_type: str = "identity"  # identity | fpn
    fpn_dim: int = 512  # neck channels (identity requires == embd_dim)
    fpn_with_ln: bool = True  # LayerNorm per neck level
    head_dim: int = 512  # hidden channels of the heads
    head_kernel_size: int = 3  # head conv kernel
    head_num_layers: int = 3  # head layers including the prediction conv
    head_with_ln: bool = True  # LayerNorm in the heads (then the hidden convs have no bias)
    max_buffer_len_factor: float = 6.0  # point buffer length = max_seq_len * factor
    use_abs_pe: bool = False  # sinusoidal absolute PE after the embedding (window_attn backbones only)
    # derived in _finalize (do not set in YAML):
    input_dim: int = 0  # ← dataset.input_dim
    num_classes: int = 0  # ← dataset.num_classes
    max_seq_len: int = 0  # ← dataset.max_seq_len


@dataclass
class TrainCfg:
    center_sample: str = "radius"  # radius | none
    center_sample_radius: float = 1.5  # in units of the level stride
    loss_weight: float = 1.0  # weight of the regression loss; <= 0 means auto-balance
    cls_prior_prob: float = 0.01  # classifier bias prior
    init_loss_norm: float = 2000  # initial value of the EMA loss normaliser (momentum 0.9)
    clip_grad_l2norm: float = -1  # gradient-norm clip; <= 0 disables
    head_empty_cls: tuple[int, ...] = ()  # classes whose classifier bias is set very negative
    label_smoothing: float = 0.0  # focal-target smoothing ε: t*(1-ε) + ε/(C+1)


# The NMS modes of test.nms_method: Gaussian soft-NMS (the reference), linear soft-NMS, hard NMS,
# or none (keep the model's top candidates).
NMS_METHODS = ("soft", "linear", "hard", "none")


@dataclass
class TestCfg:
    __test__ = False  # not a pytest test class
    pre_nms_thresh: float = 0.001  # keep candidates with probability > this
    pre_nms_topk: int = 5000  # top-k per pyramid level before NMS
    iou_threshold: float = 0.1  # NMS IoU threshold (hard / linear soft-NMS)
    min_score: float = 0.01  # score floor during / after NMS
    max_seg_num: int = 1000  # max detections per video
    nms_method: str = "soft"  # one of NMS_METHODS: soft (Gaussian) | linear (soft) | hard | none
    nms_sigma: float = 0.5  # Gaussian soft-NMS σ: weight exp(-iou² / σ)
    duration_thresh: float = 0.05  # min segment length, feature-grid units
    multiclass_nms: bool = True  # per-class NMS (True) or class-agnostic + voting (False)
    ext_score_file: Optional[str] = None  # external video-level classifier scores (ANet/HACS fusion)
    voting_thresh: float = 0.75  # IoU threshold of segment voting (class-agnostic only; 0 disables)


@dataclass
class OptCfg:
    type: str = "AdamW"  # AdamW | SGD
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    learning_rate: float = 1e-3  # for the config's batch size (the global batch; see README "Scaling")
    epochs: int = 30  # epochs after warmup
    warmup: bool = True
    warmup_epochs: int = 5
    schedule_type: str = "cosine"  # cosine | multistep
    schedule_steps: tuple[int, ...] = ()  # multistep milestones, epochs after warmup
    schedule_gamma: float = 0.1
    decay_ssm_params: bool = True  # weight-decay A_log / D (reference video-mamba-suite behaviour)
    ema_decay: float = 0.999  # model EMA used for evaluation
    eval_start_epoch: int = -1  # evaluate after each epoch >= this (0-based); -1 = only at the end
    eval_interval: int = 1  # from eval_start_epoch on, evaluate every this many epochs (the last always)
    ckpt_freq: int = 5  # also keep a checkpoint every this many epochs (the last one is always kept)
    print_freq: int = 10  # iterations between log lines / TensorBoard scalars
    ckpt_every_iters: int = 0  # also checkpoint every this many optimizer steps, mid-epoch too (0 = off)
    keep_last: int = 3  # iteration checkpoints (iter_NNNNNNN.pth) kept on disk; older ones are deleted
    accumulate: int = 1  # micro-batches per optimizer step; loader.batch_size stays the effective batch
    amp: str = "none"  # mixed precision: none | bf16 | fp16 (fp16 adds a GradScaler); SSM params/scan stay fp32


# THUMOS-14 test videos other codebases leave out (see `EvalCfg.exclude_videos`):
#   video_test_0000270: its annotations are wrong (events beyond the video's end); excluded by
#     SSN/G-TAD/VSGN/OpenTAD, which is why OpenTAD's THUMOS-14 test set has 211 videos where
#     ActionFormer's thumos14.json has 212;
#   video_test_0001292: no annotated event; already absent from ActionFormer's thumos14.json;
#   video_test_0001496: also dropped, with 0000270, by the weakly-supervised line (STPN, UM,
#     "THUMOS14 reduced": 210 test videos).
THUMOS14_COMMONLY_EXCLUDED = ("video_test_0000270",)

EVAL_CHECKPOINTS = ("last", "best-on-val")


@dataclass
class EvalCfg:
    """Evaluation protocol: printed with every mAP table and stored in metrics.json ("protocol")."""

    remove_duplicates: bool = False  # ActionFormer/VMS GT clean-up (drop zero-length and
    # near-duplicate events); False = official ActivityNet semantics
    blocked_videos: tuple[str, ...] = ()  # ids removed from GT and predictions (official
    # ActivityNet "blocked videos" semantics)
    blocked_videos_file: Optional[str] = None  # JSON list of more blocked ids (e.g. ActivityNet's
    # api.php?action=get_blocked_videos output), read at evaluation time
    exclude_videos: tuple[str, ...] = ()  # ids left out of GT and predictions because their
    # annotations are known to be wrong, e.g. THUMOS-14 [video_test_0000270] (212 -> 211 test
    # videos, as OpenTAD / G-TAD report); see THUMOS14_COMMONLY_EXCLUDED above
    checkpoint: str = "last"  # which epoch's numbers train.py reports: last | best-on-val
    # (best-on-val evaluates every epoch >= opt.eval_start_epoch, keeps best.pth and reports
    # the best epoch; the selection uses the evaluation split, so say so when it is the test set)


@dataclass
class Config:
    dataset: DatasetCfg = field(default_factory=DatasetCfg)
    loader: LoaderCfg = field(default_factory=LoaderCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    test: TestCfg = field(default_factory=TestCfg)
    opt: OptCfg = field(default_factory=OptCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)  # evaluation protocol (YAML `eval:`)
    seed: int = 1234567891  # init_rand_seed of the reference
    threads: int = 0  # CPU threads (torch + C++ kernels); 0 = auto: OMP_NUM_THREADS, else the
    # cores this process may use (affinity, cgroup quota). --threads and TAL_NUM_THREADS override it
    output_folder: str = "./ckpt"  # runs are written to output_folder/<config name>_<output name>
    config_path: str = ""  # derived: the YAML this config came from


# --------------------------------------------------------------------------------------------
# merge, overrides, finalize


def _finalize(cfg: Config) -> Config:
    """The single place for derived fields and cross-field checks (value ranges first)."""
    check_values(cfg)
    d, m = cfg.dataset, cfg.model
    m.input_dim, m.num_classes, m.max_seq_len = d.input_dim, d.num_classes, d.max_seq_len
    levels = m.arch[2] + 1
    if len(m.regression_range) != levels:
        raise ConfigError(
            f"model.regression_range has {len(m.regression_range)} entries but model.arch gives "
            f"{levels} pyramid levels (arch[2] + 1); give one [min, max] per level"
        )
    if isinstance(m.n_mha_win_size, tuple) and len(m.n_mha_win_size) != levels:
        raise ConfigError(
            f"model.n_mha_win_size has {len(m.n_mha_win_size)} entries for {levels} levels; "
            "give one per level or a single int"
        )
    _check_choice("dataset.feat_sampling", d.feat_sampling, ("variable", "resize"))
    _check_choice("model.fpn_type", m.fpn_type, ("identity", "fpn"))
    _check_choice("train.center_sample", cfg.train.center_sample, ("radius", "none"))
    _check_choice("test.nms_method", cfg.test.nms_method, NMS_METHODS)
    _check_choice("opt.type", cfg.opt.type, ("AdamW", "SGD"))
    _check_choice("opt.schedule_type", cfg.opt.schedule_type, ("cosine", "multistep"))
    _check_choice("eval.checkpoint", cfg.eval.checkpoint, EVAL_CHECKPOINTS)
    if cfg.eval.checkpoint == "best-on-val" and cfg.opt.eval_start_epoch < 0:
        raise ConfigError(
            "eval.checkpoint=best-on-val needs epochs to compare: set opt.eval_start_epoch >= 0 "
            "(the first 0-based epoch evaluated)"
        )
    if m.fpn_type == "identity" and m.fpn_dim != m.embd_dim:
        raise ConfigError(f"model.fpn_type identity needs model.fpn_dim == model.embd_dim ({m.fpn_dim} != {m.embd_dim})")
    return cfg


def _check_choice(key: str, value: str, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"{key} must be one of {list(options)}, got {value!r}")


def window_sizes(model: ModelCfg) -> list[int]:
    """Per-level window sizes from `model.n_mha_win_size` (an int applies to every level)."""
    levels = model.arch[2] + 1
    if isinstance(model.n_mha_win_size, int):
        return [model.n_mha_win_size] * levels
    return list(model.n_mha_win_size)


def _read_yaml(path: str) -> Any:
    """One YAML file through the strict loader (no aliases, duplicate keys or deep nesting)."""
    try:
        return load_yaml(path, "config") or {}
    except UnsafeInputError as exc:
        raise ConfigError(str(exc)) from None


def config_files(path: str) -> list[str]:
    """The files a config is read from: the YAML itself and every `_base_` file it inherits.

    For the commands' output checks (no output may replace one of them).
    """
    found = locate_config(path)
    if found is None:
        return []
    files = [os.path.realpath(found)]
    data = _read_yaml(found)
    if isinstance(data, dict):
        resolve_bases(data, found, _read_yaml, files=files)
    return files


def load_config(path: Optional[str] = None, overrides: typing.Sequence[str] = (), data: Optional[dict] = None) -> Config:
    """Read a YAML config (or an already parsed dict), apply `key=value` overrides, finalize.

    Raises:
        ConfigError: with the file name and the offending key.
    """
    if data is None:
        if path is None:
            raise ConfigError("load_config needs a YAML path or a dict")
        found = locate_config(path)  # the path, else the packaged config of that name
        if found is None:
            raise ConfigError(f"config file not found: {path} (nor among the packaged configs "
                              f"in {', '.join(packaged_config_dirs()) or 'libs/configs'})")
        path = found
        data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (dataset:, model:, ...)")
    data = resolve_bases(data, path or "config.yaml", _read_yaml)
    data = {k: v for k, v in data.items() if k != "config_path"}
    try:
        cfg = merge(Config(), data, "")
        for text in overrides:
            apply_override(cfg, text)
        cfg.config_path = path or cfg.config_path
        return _finalize(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{_source(exc, path, overrides)}: {exc}") from None


def _source(exc: ConfigError, path: Optional[str], overrides: typing.Sequence[str]) -> str:
    """Where a bad value came from: the last --opts override that set its key, else the file."""
    key = getattr(exc, "key", None)
    for text in reversed(list(overrides) if key else []):
        name = text.split("=", 1)[0].strip()
        if key == name or key.startswith(name + "."):
            return f"--opts {text if len(text) <= 80 else text[:60] + '...'}"
    return path or "config"


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict (lists instead of tuples), ready for YAML / checkpoints."""

    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def write_config(cfg: Config, path: Union[str, os.PathLike]) -> None:
    """Write the resolved config as YAML, atomically (a run folder's config.yaml)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def describe_schedule(cfg: Config) -> str:
    """The training length in words, e.g. "3 epochs + 5 warmup = 8 epochs".

    `opt.epochs` counts the epochs after warmup; with `opt.warmup` the run trains
    `opt.epochs + opt.warmup_epochs` epochs (as `libs.engine.scheduler` schedules them).
    """
    opt = cfg.opt
    if not opt.warmup or opt.warmup_epochs == 0:
        return f"{opt.epochs} epochs (no warmup)"
    total = opt.epochs + opt.warmup_epochs
    return f"{opt.epochs} epochs + {opt.warmup_epochs} warmup = {total} epochs"
