"""Get feature archives onto disk and check a feature folder before training on it.

    python tools/prepare_features.py join feats.tar.gz.part* --out data/features [--sha256 HEX]
    python tools/prepare_features.py verify FEATURE_FOLDER --config CONFIG
    python tools/prepare_features.py verify FEATURE_FOLDER --gt ANN.json [--file-prefix P]
        [--feature-type S] [--file-ext .npy] [--input-dim C] [--default-fps F] [--feat-stride S]
        [--num-frames N] [--split S ...]

`join` streams the parts of a split archive (`.tar`, `.tar.gz`, `.tar.bz2`, `.tar.xz`) into the
extractor as one byte stream: nothing is written twice and no joined copy is needed. Parts are
taken in natural order (part2 before part10; `--keep-order` keeps the order given), with a
progress bar on terminals, and the sha256 of the joined bytes is printed (and compared with
`--sha256`, which is checked BEFORE anything is extracted). A truncated or corrupt archive stops
with a message naming the byte offset and the parts. Members are extracted with tarfile's "data"
filter (no absolute paths, no `..`, no links out of the folder) into a staging folder inside
`--out`, and renamed into place only when the whole archive has been read and checked: a failure
(corrupt archive, disk full, I/O error) leaves nothing of it behind. Every failure is one
`error:` line with exit status 2.

`verify` reads every feature file of the annotation JSON's videos (the config's train + val
splits with --config; all videos, or --split, otherwise) and reports, per check, how many
videos fail and an example:

    error    missing file, unreadable file, not a 2-D T x C array, wrong channel count (--input-dim),
             NaN / Inf values, unknown fps, fps/stride mismatch (median features per second more
             than 10 % off what fps / feat_stride predict: every target would be misplaced)
    warning  features too short for the annotated duration (segments past the end are clipped
             or lost) or too long, default_fps overriding the JSON's fps
    info     feature files of videos the JSON does not list

The exit status of `verify` is 1 when an error would break (or silently spoil) training, else
0; bad arguments or unreadable inputs give 2. The features a video is expected to have: T = floor((duration * fps -
num_frames) / feat_stride) + 1, i.e. they cover (T - 1) * feat_stride + num_frames frames.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence


from libs.cli import add_deprecated_alias, positive_float, positive_int, run_cli
from libs.feature_prep.archive import find_parts, hash_parts, join_and_extract
from libs.feature_prep.verify import SEVERITY, VerifySettings, format_report, verify
from libs.utils.paths import check_output_dir


# --------------------------------------------------------------------------------------------
# join


def run_join(args: argparse.Namespace) -> int:
    """Hash (when --sha256 is given), then extract; every failure is a ValueError (one line)."""
    parts = find_parts(args.parts, args.keep_order)
    out = Path(args.out)
    check_output_dir(out, "--out", "to extract into")  # before reading gigabytes
    for i, part in enumerate(parts, 1):
        print(f"part {i}/{len(parts)}: {part} ({part.stat().st_size:,} bytes)")
    sizes = {p.stat().st_size for p in parts[:-1]}
    if len(sizes) > 1:  # split(1) / 7z parts are equal-sized except the last one
        print(
            f"warning: parts before the last differ in size ({sorted(sizes)} bytes): "
            "an incomplete download?",
            file=sys.stderr,
        )
    if args.sha256:  # checked before extracting: a wrong archive never reaches --out
        expected, got = args.sha256.strip().lower(), hash_parts(parts)
        if expected != got:
            raise ValueError(
                f"sha256 mismatch: expected {expected}, got {got}; the archive differs from the "
                f"published one (re-download it). Nothing was extracted into {out}."
            )
    summary = join_and_extract(parts, out)
    print(f"extracted {summary['files']} files ({summary['bytes']:,} bytes) into {out}")
    print(f"sha256 {summary['sha256']}")
    if args.sha256:
        print("sha256 matches")
    return 0


# --------------------------------------------------------------------------------------------
# verify


def settings_from_args(args: argparse.Namespace) -> VerifySettings:
    """--config gives every default; the explicit flags override it."""
    s = VerifySettings(json_file="", feat_folder=args.folder)
    if args.config:
        from libs.core.config import load_config

        d = load_config(args.config).dataset
        s = VerifySettings(
            d.json_file,
            args.folder,
            d.file_prefix,
            d.feature_type,
            d.file_ext,
            d.input_dim,
            d.default_fps,
            d.feat_stride,
            d.num_frames,
            tuple(dict.fromkeys((*d.train_split, *d.val_split))),
        )
    for name, value in (
        ("json_file", args.json),
        ("prefix", args.prefix),
        ("suffix", args.suffix),
        ("ext", args.ext),
        ("dim", args.dim),
        ("fps", args.fps),
        ("feat_stride", args.feat_stride),
        ("num_frames", args.num_frames),
    ):
        if value is not None:
            setattr(s, name, value)
    if args.split:
        s.splits = tuple(args.split)
    if not s.json_file:
        raise ValueError("verify needs the annotations: --config CONFIG or --gt ANNOTATIONS.json")
    return s


def run_verify(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    if not os.path.exists(s.json_file):  # a FIFO or device: read_json names it
        raise FileNotFoundError(f"annotation file not found: {s.json_file}")
    report = verify(s)
    print(format_report(report, s, examples=args.examples))
    if args.list:
        for check, items in report.problems.items():
            for video_id, detail in items:
                print(f"{SEVERITY[check]}: {check}: {video_id}: {detail}")
    return 1 if report.failed else 0


# --------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    join = sub.add_parser("join", help="extract a multi-part .tar(.gz) archive with a checksum")
    join.add_argument("parts", nargs="+", help="the part files, or one common prefix")
    join.add_argument("--out", required=True, help="folder to extract into")
    join.add_argument("--sha256", help="expected sha256 of the joined archive")
    join.add_argument("--keep-order", action="store_true", help="join in the order given")
    ver = sub.add_parser("verify", help="check a feature folder against an annotation JSON")
    ver.add_argument("folder", help="feature folder (or one .h5 file)")
    ver.add_argument("--config", help="take the file naming, dim, fps, stride and splits from it")
    ver.add_argument("--gt", dest="json", metavar="GT_JSON",
                     help="annotation JSON (default: the config's)")
    ver.add_argument("--file-prefix", dest="prefix", metavar="FILE_PREFIX",
                     help="file-name prefix (dataset.file_prefix)")
    ver.add_argument("--feature-type", dest="suffix", metavar="FEATURE_TYPE",
                     help="file-name suffix before the extension (dataset.feature_type)")
    ver.add_argument("--file-ext", dest="ext", choices=(".pt", ".npy", ".npz"),
                     help="file extension (dataset.file_ext)")
    ver.add_argument("--input-dim", dest="dim", type=positive_int, metavar="INPUT_DIM", help="expected channels C")
    ver.add_argument("--default-fps", dest="fps", type=positive_float, metavar="DEFAULT_FPS",
                     help="fps of every video (default: the JSON's)")
    ver.add_argument("--feat-stride", type=positive_float, help="frames between features")
    ver.add_argument("--num-frames", type=positive_float, help="frames per feature clip")
    ver.add_argument("--split", nargs="+", help="only these JSON subsets")
    ver.add_argument("--examples", type=positive_int, default=1, help="examples per check in the table")
    ver.add_argument("--list", action="store_true", help="also list every problem")
    for old, new in (("--json", "--gt"), ("--prefix", "--file-prefix"), ("--dim", "--input-dim"),
                     ("--suffix", "--feature-type"), ("--ext", "--file-ext"), ("--fps", "--default-fps")):
        add_deprecated_alias(ver, old, new)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: run_join(args) if args.command == "join" else run_verify(args))


if __name__ == "__main__":
    sys.exit(main())
