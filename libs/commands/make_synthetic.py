"""Write synthetic per-video features for an ActivityNet-style annotation JSON.

For every video the file `OUT/(file_prefix + video_id + feature_type + ext)` holds a float32
T x C array, T = max(1, floor((duration * fps - num_frames) / feat_stride) + 1), i.e. exactly
the clips of `num_frames` frames every `feat_stride` frames that fit in the video. The content
is learnable but not trivial:
  - Gaussian noise everywhere, plus a per-video background offset;
  - inside each annotated segment, the class prototype (a fixed random vector per label_id)
    with a per-instance amplitude and direction jitter;
  - smooth boundaries: a sigmoid ramp that crosses over about two features at each end;
  - distractors: short, weaker bursts of class-like content outside the segments.
Segment positions use `libs.core.segments.seconds_to_grid`, the same mapping as the datasets, so
the signal sits where the loader puts the targets. fps is the JSON's `fps`, else --default-fps.

    python tools/make_synthetic.py --gt data/thumos/annotations/thumos14.json --out data/synthetic_thumos \
        --input-dim 64 --feat-stride 4 --num-frames 16 --file-ext .pt
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch


from libs.cli import add_deprecated_alias, positive_float, positive_int, run_cli, seed_arg
from libs.core.annotations import read_annotations
from libs.core.segments import seconds_to_grid
from libs.datasets.features import output_feature_path, save_features
from libs.utils.paths import check_file_name, check_output_dir

logger = logging.getLogger(__name__)

NOISE_STD = 1.0  # per-channel Gaussian noise
# Prototype norm in noise-std units = the per-feature signal-to-noise ratio along the prototype
# direction, independent of dim: one feature alone is ambiguous, a few consecutive ones are not.
SIGNAL_NORM = 3.0
BACKGROUND_STD = 0.3  # per-channel std of a per-video constant offset, so "non-zero mean" is no cue
SIGNAL_AMP = (0.7, 1.3)  # per-instance amplitude range of the class prototype
INSTANCE_JITTER = (
    0.5  # norm of a per-instance random direction added to the prototype, relative to it
)
RAMP_TAU = 0.5  # sigmoid temperature (features): 12% → 88% over two features at each boundary
DISTRACTOR_RATE = 0.02  # expected distractor bursts per feature
DISTRACTOR_AMP = (0.25, 0.45)  # weaker than real actions
DISTRACTOR_LEN = (0.5, 2.5)  # features; shorter than most actions
DISTRACTOR_MARGIN = 2.0  # features kept free around real segments


def num_features(duration: float, fps: float, feat_stride: float, num_frames: float) -> int:
    """Number of clips of `num_frames` frames every `feat_stride` frames covering the video (>= 1)."""
    return max(1, math.floor((duration * fps - num_frames) / feat_stride) + 1)


def class_prototypes(num_classes: int, dim: int, seed: int) -> np.ndarray:
    """Fixed random class prototypes [K, C] of norm SIGNAL_NORM (the same for every video)."""
    protos = np.random.default_rng([seed, 0x5EED]).standard_normal((num_classes, dim))  # [K, C]
    return (SIGNAL_NORM * protos / np.linalg.norm(protos, axis=1, keepdims=True)).astype(
        np.float32
    )  # [K, C]


def _video_rng(seed: int, video_id: str) -> np.random.Generator:
    """Per-video generator: each video depends only on (seed, id), not on order or --max-videos."""
    return np.random.default_rng([seed, zlib.crc32(video_id.encode("utf-8"))])


def _add_burst(feats: np.ndarray, start: float, end: float, vector: np.ndarray) -> None:
    """Add `vector` [C] to feats [T, C] over grid interval [start, end] with sigmoid ramps."""
    lo = max(0, math.floor(start - 6 * RAMP_TAU))
    hi = min(len(feats), math.ceil(end + 6 * RAMP_TAU) + 1)
    if hi <= lo:
        return
    idx = np.arange(lo, hi, dtype=np.float32)  # [L]
    weight = (
        1.0 / (1.0 + np.exp(-(idx - start) / RAMP_TAU)) / (1.0 + np.exp(-(end - idx) / RAMP_TAU))
    )  # [L]
    feats[lo:hi] += weight[:, None] * vector[None, :]  # [L, C]


def _instance_vector(
    rng: np.random.Generator, prototype: np.ndarray, amp: tuple[float, float]
) -> np.ndarray:
    """Prototype [C] with a random amplitude and a random direction jitter."""
    jitter = rng.standard_normal(prototype.shape)  # [C]
    jitter *= (
        INSTANCE_JITTER * np.linalg.norm(prototype) / max(np.linalg.norm(jitter), 1e-12)
    )  # [C]
    return (rng.uniform(*amp) * (prototype + jitter)).astype(np.float32)  # [C]


def _add_distractors(
    rng: np.random.Generator, feats: np.ndarray, segments: np.ndarray, prototypes: np.ndarray
) -> int:
    """Add short weak class-like bursts away from the real segments [N, 2]; returns how many."""
    count = 0
    for _ in range(rng.poisson(DISTRACTOR_RATE * len(feats))):
        centre, half = rng.uniform(0, len(feats)), 0.5 * rng.uniform(*DISTRACTOR_LEN)
        start, end = centre - half, centre + half
        near = (segments[:, 0] - DISTRACTOR_MARGIN < end) & (
            segments[:, 1] + DISTRACTOR_MARGIN > start
        )  # [N]
        if near.any():
            continue
        label = rng.integers(len(prototypes))
        _add_burst(feats, start, end, _instance_vector(rng, prototypes[label], DISTRACTOR_AMP))
        count += 1
    return count


def synth_video(
    rng: np.random.Generator,
    num_feats: int,
    segments: np.ndarray,
    labels: np.ndarray,
    prototypes: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Features of one video.

    Args:
        segments: [N, 2] grid units; labels: [N] label ids indexing `prototypes` [K, C].
    Returns:
        (feats [T, C] float32, number of distractor bursts).
    """
    dim = prototypes.shape[1]
    feats = rng.standard_normal((num_feats, dim), dtype=np.float32) * NOISE_STD  # [T, C]
    feats += rng.standard_normal(dim, dtype=np.float32) * BACKGROUND_STD  # [T, C]
    for (start, end), label in zip(segments, labels):
        _add_burst(
            feats, float(start), float(end), _instance_vector(rng, prototypes[label], SIGNAL_AMP)
        )
    return feats, _add_distractors(rng, feats, segments, prototypes)


def _video_segments(
    value: dict, fps: float, feat_stride: float, num_frames: float
) -> tuple[np.ndarray, np.ndarray]:
    """Annotated segments on the feature grid [N, 2] and their label ids [N]."""
    acts = value.get("annotations", [])
    seconds = torch.tensor([a["segment"] for a in acts], dtype=torch.float64).reshape(
        -1, 2
    )  # [N, 2]
    grid = seconds_to_grid(seconds, fps, feat_stride, num_frames).numpy()  # [N, 2]
    return grid, np.asarray([int(a["label_id"]) for a in acts], dtype=np.int64)


def _select_videos(
    database: dict, subsets: Optional[Sequence[str]], max_videos: Optional[int]
) -> list[str]:
    """Video ids in JSON order, filtered by subset (case-insensitive) and capped."""
    wanted = {s.lower() for s in subsets} if subsets else None
    ids = [
        vid
        for vid, v in database.items()
        if wanted is None or str(v.get("subset", "")).lower() in wanted
    ]
    return ids[:max_videos] if max_videos is not None else ids


def output_paths(json_file: str, out_dir: str, videos: Sequence[str], file_prefix: str,
                 feature_type: str, ext: str) -> dict[str, str]:
    """Every video's output file, all checked before the first write: plain names, no symbolic
    link or special file, and never the --gt file itself."""
    check_output_dir(out_dir, "--out", "for the feature files")
    gt = os.path.realpath(json_file)
    paths = {}
    for video_id in videos:
        check_file_name(video_id, "video id", json_file, "video ids become file names in --out")
        path = output_feature_path(out_dir, video_id, file_prefix, feature_type, ext)
        if os.path.realpath(path) == gt:
            raise ValueError(f"feature file {path} of video {video_id!r} is also the input --gt: writing "
                             "it would destroy the input; choose another --out or --file-prefix")
        paths[video_id] = path
    return paths


def make_synthetic(
    json_file: str,
    out_dir: str,
    *,
    dim: int = 64,
    feat_stride: float = 4,
    num_frames: float = 16,
    fps_default: float = 30.0,
    file_prefix: str = "",
    feature_type: str = "",
    ext: str = ".pt",
    seed: int = 0,
    subsets: Optional[Sequence[str]] = None,
    max_videos: Optional[int] = None,
) -> dict:
    """Write synthetic features for the videos of `json_file` into `out_dir`; deterministic in `seed`.

    Returns:
        Summary dict: videos, features (total T), segments, distractors, dim, num_classes,
        out_dir, ext, seconds.
    """
    began = time.time()
    annotations = read_annotations(json_file, require_label_ids=True)
    database = annotations.database
    prototypes = class_prototypes(max(annotations.id_to_name, default=0) + 1, dim, seed)  # [K, C]
    totals = {"videos": 0, "features": 0, "segments": 0, "distractors": 0}
    videos = list(_select_videos(database, subsets, max_videos))
    paths = output_paths(json_file, out_dir, videos, file_prefix, feature_type, ext)
    os.makedirs(out_dir, exist_ok=True)  # after the checks: a refused run leaves nothing behind
    for video_id in videos:
        value = database[video_id]
        if "duration" not in value:
            raise ValueError(f"{json_file}: video '{video_id}' has no 'duration'")
        fps = float(value.get("fps", fps_default))
        segments, labels = _video_segments(value, fps, feat_stride, num_frames)
        num_feats = num_features(float(value["duration"]), fps, feat_stride, num_frames)
        feats, distractors = synth_video(
            _video_rng(seed, video_id), num_feats, segments, labels, prototypes
        )
        save_features(paths[video_id], feats)
        for key, n in zip(totals, (1, num_feats, len(segments), distractors)):
            totals[key] += n
    summary = dict(
        totals,
        dim=dim,
        num_classes=len(prototypes),
        out_dir=out_dir,
        ext=ext,
        seconds=round(time.time() - began, 2),
    )
    logger.info("synthetic features: %s", summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", metavar="GT_JSON", help="ActivityNet-style annotation JSON (required)")
    parser.add_argument("--out", required=True, help="output folder for the feature files")
    parser.add_argument("--input-dim", type=positive_int, default=64, help="feature channels C")
    parser.add_argument("--feat-stride", type=positive_float, default=4, help="frames between features")
    parser.add_argument("--num-frames", type=positive_float, default=16, help="frames per feature clip")
    parser.add_argument("--default-fps", type=positive_float, default=30.0,
                        help="fps of videos without a JSON 'fps'")
    parser.add_argument("--file-prefix", default="", help="file-name prefix (e.g. v_)")
    parser.add_argument("--feature-type", default="",
                        help="file-name suffix (e.g. _spatial_feature)")
    parser.add_argument("--file-ext", default=".pt", choices=(".pt", ".npy", ".npz"),
                        help="file format")
    parser.add_argument("--seed", type=seed_arg, default=0)
    parser.add_argument("--split", nargs="*", default=None,
                        help="only these JSON subsets (default: all)")
    parser.add_argument("--max-videos", type=positive_int, default=None,
                        help="only the first N selected videos")
    for old, new in (("--json", "--gt"), ("--dim", "--input-dim"), ("--fps-default", "--default-fps"),
                     ("--ext", "--file-ext"), ("--subsets", "--split")):
        add_deprecated_alias(parser, old, new)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gt is None:
        parser.error("the following arguments are required: --gt")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    summary = make_synthetic(
        args.gt,
        args.out,
        dim=args.input_dim,
        feat_stride=args.feat_stride,
        num_frames=args.num_frames,
        fps_default=args.default_fps,
        file_prefix=args.file_prefix,
        feature_type=args.feature_type,
        ext=args.file_ext,
        seed=args.seed,
        subsets=args.split,
        max_videos=args.max_videos,
    )
    print(
        f"make_synthetic: {summary['videos']} videos, {summary['features']} features x {summary['dim']} dims, "
        f"{summary['num_classes']} classes, {summary['segments']} segments, {summary['distractors']} distractors "
        f"→ {summary['out_dir']} ({summary['ext']}, {summary['seconds']} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
