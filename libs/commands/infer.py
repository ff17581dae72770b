"""Detect actions in new videos from their feature files alone (no annotation JSON needed).

    python tools/infer.py CONFIG CKPT FEATURES... [--default-fps F] [--feat-stride S] [--num-frames N]
                          [--out detections.json] [--plot timeline.png] [--opts k=v ...]

FEATURES are feature files (T x C, `.pt` / `.npy` / `.npz`, as the datasets read them) or folders
of them. The video id is the file name without the config's `dataset.file_prefix`,
`dataset.feature_type` and extension. Each video is read with the config's feature sampling
(`downsample_rate` / `resize`), detected with the checkpoint's EMA weights, post-processed with
`test.*`, and converted to seconds with

    fps          --default-fps, else dataset.default_fps (one of the two is required)
    feat_stride  --feat-stride, else dataset.feat_stride (frames between features)
    num_frames   --num-frames, else dataset.num_frames (frames per feature clip)
    duration     ((T - 1) * feat_stride + num_frames) / fps  (the frames the features cover)

fps lies in (0, 1000], feat_stride and num_frames in (0, 10000], and a video may last at most
1e7 s. With a checkpoint that stores its config (every one train.py writes), --feat-stride and
--num-frames may only restate the stored values (the network was trained on that time axis); they
are for published checkpoints. --default-fps stays free: new videos may have another frame rate.

The output is an ActivityNet results JSON (`{"version", "results": {video_id: [{"label",
"segment": [s, e], "score"}]}, "external_data"}`) plus `"video_info"` (duration, fps, stride,
features, file per video). Labels are class names when the config's annotation JSON is readable,
else integer class ids. `--plot` draws a timeline of the top detections (needs matplotlib).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence


import torch

from libs.cli import (
    add_deprecated_alias, add_device_arg, add_opts_arg, add_threads_arg, config_inputs,
    load_detector_and_config, pick_device, positive_float, positive_int, run_cli,
)
from libs.viz import pyplot
from libs.core.annotations import read_annotations
from libs.core.config import Config, DatasetCfg, load_config
from libs.core.structures import Detections, VideoSample
from libs.datasets.base import feature_grid
from libs.datasets.collate import collate
from libs.datasets.features import FILE_EXTS, load_feature_file
from libs.evaluation import detections_to_results
from libs.inference import postprocess, predict_batch
from libs.utils.io import atomic_write_json
from libs.utils.paths import check_outputs, refuse_folder_name
from libs.utils.threads import setup_threads

logger = logging.getLogger("infer")

MAX_FPS = 1000.0  # --default-fps: frames per second
MAX_FRAMES = 1e4  # --feat-stride / --num-frames: frames
MAX_DURATION = 1e7  # seconds (115 days): a longer video means a wrong fps / stride


def bounded(high: float):
    """argparse type: a finite number in (0, high]; otherwise one `error:` line, exit 2."""

    def parse(text: str) -> float:
        value = positive_float(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text!r}")
        return value

    return parse


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Detect actions in new videos from their feature files alone.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("config", help="YAML config the checkpoint was trained with")
    p.add_argument("ckpt", help="checkpoint (.pth / published .pth.tar) or a run folder")
    p.add_argument("features", nargs="+", help="feature files (T x C) or folders of them")
    p.add_argument("--default-fps", dest="fps", type=bounded(MAX_FPS), default=None,
                   help="fps of every video (default: the config's dataset.default_fps)")
    p.add_argument(
        "--feat-stride",
        type=bounded(MAX_FRAMES),
        default=None,
        help="frames between features (default: dataset.feat_stride)",
    )
    p.add_argument(
        "--num-frames",
        type=bounded(MAX_FRAMES),
        default=None,
        help="frames per feature clip (default: dataset.num_frames)",
    )
    p.add_argument("--out", default="detections.json", help="results JSON (default: %(default)s)")
    p.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="timeline plot; with several videos one file per video: PNG stem + _<id>",
    )
    p.add_argument("--plot-top-k", type=positive_int, default=10, help="detections drawn per video")
    add_opts_arg(p, "test.nms_sigma=0.75")
    add_device_arg(p)
    add_threads_arg(p)
    add_deprecated_alias(p, "--fps", "--default-fps")
    return p


def feature_files(paths: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded to their feature files (sorted); no duplicates."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_EXTS)
            if not found:
                raise FileNotFoundError(
                    f"no feature files ({'/'.join(FILE_EXTS)}) in folder {path}"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"feature file not found: {path}")
    return list(dict.fromkeys(files))


def video_id_of(path: Path, dcfg: DatasetCfg) -> str:
    """File name minus the config's file_prefix / feature_type (when present) and extension."""
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    if dcfg.file_prefix and name.startswith(dcfg.file_prefix):
        name = name[len(dcfg.file_prefix) :]
    if dcfg.feature_type and name.endswith(dcfg.feature_type):
        name = name[: -len(dcfg.feature_type)]
    return name


def load_video(
    path: Path, cfg: Config, fps: float, feat_stride: float, num_frames: float
) -> VideoSample:
    """One feature file as a VideoSample without ground truth; duration from the features."""
    feats = load_feature_file(str(path), cfg.dataset.input_dim)  # [C, T_raw], checked finite
    duration = ((feats.shape[-1] - 1) * feat_stride + num_frames) / fps  # seconds
    if not math.isfinite(duration) or not 0 < duration <= MAX_DURATION:
        raise ValueError(
            f"{path}: {feats.shape[-1]} features at fps {fps:g}, feat_stride {feat_stride:g}, "
            f"num_frames {num_frames:g} give a duration of {duration:g} s (allowed: up to "
            f"{MAX_DURATION:g} s); check --default-fps / dataset.default_fps and the stride"
        )
    d = cfg.dataset
    feats, stride, frames = feature_grid(
        feats, d.feat_sampling, feat_stride, num_frames, d.downsample_rate, d.max_seq_len
    )  # [C, T], the datasets' sampling
    return VideoSample(
        video_id=video_id_of(path, cfg.dataset),
        feats=feats,
        segments=None,
        labels=None,
        fps=fps,
        duration=duration,
        feat_stride=stride,
        feat_num_frames=frames,
    )


def class_names(cfg: Config) -> dict[int, object]:
    """label id -> class name from the config's annotation JSON, else label id -> the id itself."""
    ids = {i: i for i in range(cfg.dataset.num_classes)}
    try:
        names = read_annotations(cfg.dataset.json_file, "annotation file").id_to_name
    except (OSError, ValueError, TypeError) as exc:
        logger.warning(
            "class names unavailable (%s: %s); labels are class ids",
            cfg.dataset.json_file or "dataset.json_file unset",
            exc,
        )
        return ids
    if not set(ids) <= set(names):
        logger.warning(
            "%s does not name every class id 0..%d; labels are class ids",
            cfg.dataset.json_file,
            cfg.dataset.num_classes - 1,
        )
        return ids
    return names


@torch.no_grad()
def detect(model, sample: VideoSample, cfg: Config, device: torch.device) -> Detections:
    """Detections in seconds of one video (batch of 1, padded as in evaluation)."""
    batch = collate([sample], cfg.dataset.max_seq_len, model.size_divisor, is_training=False)
    return postprocess(predict_batch(model, batch, device), batch.samples, cfg.test)[0]


def plot_paths(plot: str, video_ids: Sequence[str]) -> dict[str, Path]:
    """One video: the path as given; several: `<stem>_<video id><suffix>` next to it."""
    path = Path(plot)
    if len(video_ids) == 1:
        return {video_ids[0]: path}
    safe = {vid: re.sub(r"[^A-Za-z0-9._-]+", "_", vid) for vid in video_ids}
    return {
        vid: path.with_name(f"{path.stem}_{safe[vid]}{path.suffix or '.png'}") for vid in video_ids
    }


def check_inputs(args: argparse.Namespace, cfg: Config) -> tuple[list[Path], list[str]]:
    """Feature files and their video ids; every output checked before any work is done."""
    files = feature_files(args.features)
    ids = [video_id_of(f, cfg.dataset) for f in files]
    dupes = sorted(vid for vid, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"several feature files map to the same video id: {dupes[:5]}")
    if args.plot:
        refuse_folder_name(args.plot, "--plot")  # plot_paths' Path() would drop the '/'
    plots = plot_paths(args.plot, ids) if args.plot else {}
    check_outputs(
        [*config_inputs(cfg, args.config, "CONFIG"), ("CKPT", args.ckpt)]
        + [("feature file", f) for f in files],
        [("--out", args.out)] + [("--plot", p) for p in plots.values()],
    )
    if args.plot:
        pyplot("tools/infer.py --plot")  # matplotlib missing: say so before the inference
    return files, ids


def time_axis(args: argparse.Namespace, cfg: Config, stored: object, ckpt: Path) -> tuple:
    """(fps, feat_stride, num_frames): the flags, else the config (stored geometry applied).

    A checkpoint with a stored config fixes feat_stride and num_frames: a flag may only restate
    them (as `--opts dataset.feat_stride=...` may not change them either)."""
    for flag, value, key in (("--feat-stride", args.feat_stride, "feat_stride"),
                             ("--num-frames", args.num_frames, "num_frames")):
        kept = getattr(cfg.dataset, key)
        if stored and value is not None and float(value) != float(kept):
            raise ValueError(
                f"{flag} {value:g} conflicts with dataset.{key} {kept:g} stored in the checkpoint "
                f"{ckpt}: the network was trained on that time axis; drop {flag} (it is meant "
                "for published checkpoints without a stored config)"
            )
    fps = args.fps or cfg.dataset.default_fps
    if not fps or fps <= 0:
        raise ValueError(
            f"{args.config} has no dataset.default_fps: pass --default-fps (frames per second "
            "of the videos the features were extracted from)"
        )
    return fps, args.feat_stride or cfg.dataset.feat_stride, args.num_frames or cfg.dataset.num_frames


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.opts)
    setup_threads(args.threads, cfg.threads)  # before any parallel work
    files, ids = check_inputs(args, cfg)
    device = pick_device(args.device)
    # geometry keys (model.*, feat_stride, num_frames, default_fps, ...) from the checkpoint
    cfg, model, ckpt, meta = load_detector_and_config(cfg, args.ckpt, device, args.opts)
    fps, feat_stride, num_frames = time_axis(args, cfg, meta.get("config"), ckpt)
    dets, info = [], {}
    for path in files:  # one video at a time: only one video's features are in memory
        sample = load_video(path, cfg, fps, feat_stride, num_frames)
        dets.append(detect(model, sample, cfg, device))
        info[sample.video_id] = {
            "duration": sample.duration,
            "fps": fps,
            "feat_stride": feat_stride,
            "num_frames": num_frames,
            "num_feats": sample.num_feats,
            "feature_file": str(path),
        }
    results = detections_to_results(dets, class_names(cfg))
    results["video_info"] = info
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    print_summary(results)
    print(f"detections: {args.out}")
    if args.plot:
        draw_plots(args, results, ids)
    return 0


def draw_plots(args: argparse.Namespace, results: dict, ids: Sequence[str]) -> None:
    """One timeline PNG per video (matplotlib checked in `check_inputs`)."""
    from libs.commands.visualize import plot_timeline

    paths = plot_paths(args.plot, ids)
    for vid in ids:
        entries = results["results"].get(vid, [])
        duration = results["video_info"][vid]["duration"]
        plot_timeline(vid, duration, [], entries, paths[vid], top_k=args.plot_top_k)
        print(f"plot: {paths[vid]}")


def print_summary(results: dict) -> None:
    """One line per video: duration, number of detections and the best three."""
    for vid, meta in results["video_info"].items():
        entries = sorted(results["results"].get(vid, []), key=lambda r: -r["score"])
        best = ", ".join(
            f"{r['label']} {r['segment'][0]:.1f}-{r['segment'][1]:.1f} s ({r['score']:.2f})"
            for r in entries[:3]
        )
        print(f"{vid}: {meta['duration']:.1f} s, {len(entries)} detections; top: {best or '-'}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
