"""Get feature archives onto disk and check a feature folder before training on it.

    python tools/prepare_features.py join feats.tar.gz.part* --out data/features [--sha256 HEX]
    python tools/prepare_features.py verify FEATURE_FOLDER --config CONFIG
    python tools/prepare_features.py verify FEATURE_FOLDER --json ANN.json [--prefix P] [--suffix S]
        [--ext .npy] [--dim C] [--fps F] [--feat-stride S] [--num-frames N] [--split S ...]

`join` streams the parts of a split archive (`.tar`, `.tar.gz`, `.tar.bz2`, `.tar.xz`) into the
extractor as one byte stream: nothing is written twice and no joined copy is needed. Parts are
taken in natural order (part2 before part10; `--keep-order` keeps the order given), with a
progress bar on terminals, and the sha256 of the joined bytes is printed (and compared with
`--sha256`). A truncated or corrupt archive stops with a message naming the byte offset and the
parts. Members are extracted with tarfile's "data" filter (no absolute paths, no `..`, no links
out of the folder).

`verify` reads every feature file of the annotation JSON's videos (the config's train + val
splits with --config; all videos, or --split, otherwise) and reports, per check, how many
videos fail and an example:

    error    missing file, unreadable file, not a 2-D T x C array, wrong channel count (--dim),
             NaN / Inf values, unknown fps, fps/stride mismatch (median features per second more
             than 10 % off what fps / feat_stride predict: every target would be misplaced)
    warning  features too short for the annotated duration (segments past the end are clipped
             or lost) or too long, default_fps overriding the JSON's fps
    info     feature files of videos the JSON does not list

The exit status is 1 when an error would break (or silently spoil) training, else 0; bad
arguments give 2. The features a video is expected to have: T = floor((duration * fps -
num_frames) / feat_stride) + 1, i.e. they cover (T - 1) * feat_stride + num_frames frames.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import logging
import lzma
import math
import os
import re
import sys
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):  # run as `python tools/prepare_features.py`: make libs importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MISMATCH_TOL = 0.10  # |median(T / T_expected) - 1| above this: fps / feat_stride mismatch
SHORT_TOL_FEATS = 3  # per-video length tolerance: max(3 features, 2 % of the duration)
SHORT_TOL_FRAC = 0.02


# --------------------------------------------------------------------------------------------
# join


def natural_key(path: str) -> list:
    """'a.part10' sorts after 'a.part2' (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_parts(args_parts: Sequence[str], keep_order: bool) -> list[Path]:
    """The part files: as given, or `PREFIX*` when a single argument is not a file."""
    if len(args_parts) == 1 and not Path(args_parts[0]).is_file():
        prefix = Path(args_parts[0])
        parts = [p for p in prefix.parent.glob(glob_escape(prefix.name) + "*") if p.is_file()]
        if not parts:
            raise FileNotFoundError(
                f"no archive parts found: {args_parts[0]} (nor {args_parts[0]}*)"
            )
    else:
        parts = [Path(p) for p in args_parts]
        missing = [str(p) for p in parts if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"archive part(s) not found: {missing}")
    return parts if keep_order else sorted(parts, key=natural_key)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


class JoinedReader(io.RawIOBase):
    """The parts as one read-only byte stream; hashes the bytes and reports progress."""

    def __init__(self, parts: Sequence[Path], progress=None):
        self.parts = list(parts)
        self.sizes = [p.stat().st_size for p in self.parts]
        self.total = sum(self.sizes)
        self.sha256 = hashlib.sha256()
        self.position = 0  # bytes handed out so far
        self.progress = progress
        self._index, self._file = 0, None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._index < len(self.parts):
            if self._file is None:
                self._file = open(self.parts[self._index], "rb")
            n = self._file.readinto(buffer)
            if n:
                self.sha256.update(memoryview(buffer)[:n])
                self.position += n
                if self.progress is not None:
                    self.progress.update(n)
                return n
            self._file.close()
            self._file, self._index = None, self._index + 1
        return 0  # end of the last part

    def part_at(self, offset: int) -> str:
        """Which part holds byte `offset` of the joined stream (for error messages)."""
        for part, end in zip(self.parts, np.cumsum(self.sizes).tolist()):
            if offset < end:
                return str(part)
        return f"after the last part ({self.parts[-1]})"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()


class CountingReader(io.RawIOBase):
    """Counts the (decompressed) bytes read through it; remembers whether a non-zero byte came
    after `mark_end` (tar pads its end with zero blocks, anything else there is corruption)."""

    def __init__(self, stream):
        self.stream, self.count, self.end, self.trailing_data = stream, 0, None, False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        if self.end is not None and data.count(0) != len(data):
            self.trailing_data = True
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decompressed(raw: io.BufferedReader):
    """The tar byte stream: gzip / bzip2 / xz recognised by their magic bytes. These readers
    check the compressed stream's integrity (CRC, end marker) when read to the end."""
    import bz2

    head = raw.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def join_and_extract(
    parts: Sequence[Path], out: Path, show_progress: Optional[bool] = None
) -> dict:
    """Extract the archive formed by `parts` (in this order) into `out`.

    Returns:
        {"files": extracted regular files, "bytes": joined size, "sha256": hex digest}.
    Raises:
        ValueError: the joined stream is not a complete, intact tar archive (a missing, truncated
            or misordered part); the files extracted before the error stay in `out`.
    """
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    disable = not sys.stderr.isatty() if show_progress is None else not show_progress
    files = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="extract", disable=disable) as bar:
        reader = JoinedReader(parts, bar)
        raw = io.BufferedReader(reader, 1 << 20)
        try:
            stream = CountingReader(_decompressed(raw))
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    tar.extract(member, out, filter="data")
                    files += member.isfile()
                stream.end = tar.offset  # where the end-of-archive blocks start
            # read to the very end: the decompressor verifies its CRC, and tarfile, which stops
            # quietly at a garbled header, is caught by the data that follows its "end"
            while stream.read(1 << 20) or raw.read(1 << 20):
                pass
            slack = tarfile.RECORDSIZE + 2 * tarfile.BLOCKSIZE  # tar's zero padding at the end
            if stream.trailing_data or stream.count - stream.end > slack:
                raise tarfile.ReadError(
                    f"{stream.count - stream.end:,} bytes of data after the "
                    f"archive's last member (byte {stream.end:,} of the tar)"
                )
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
            if type(exc) is OSError and exc.errno is not None:
                raise  # a file-system error (disk full, permissions), not a bad archive
            where = reader.part_at(max(reader.position - 1, 0))
            raise ValueError(
                f"archive truncated or corrupt (found after reading {reader.position:,} of "
                f"{total:,} bytes, in {where}): {type(exc).__name__}: {exc}. Is a part missing, "
                f"out of order or incompletely downloaded? Parts: {[p.name for p in parts]}. "
                f"{files} files were extracted to {out}."
            ) from None
        finally:
            reader.close()
    return {"files": files, "bytes": reader.position, "sha256": reader.sha256.hexdigest()}


def run_join(args: argparse.Namespace) -> int:
    parts = find_parts(args.parts, args.keep_order)
    for i, part in enumerate(parts, 1):
        print(f"part {i}/{len(parts)}: {part} ({part.stat().st_size:,} bytes)")
    sizes = {p.stat().st_size for p in parts[:-1]}
    if len(sizes) > 1:  # split(1) / 7z parts are equal-sized except the last one
        print(
            f"warning: parts before the last differ in size ({sorted(sizes)} bytes): "
            "an incomplete download?",
            file=sys.stderr,
        )
    try:
        summary = join_and_extract(parts, Path(args.out))
    except ValueError as exc:  # truncated / corrupt: the download is at fault, not the arguments
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"extracted {summary['files']} files ({summary['bytes']:,} bytes) into {args.out}")
    print(f"sha256 {summary['sha256']}")
    if args.sha256 and args.sha256.strip().lower() != summary["sha256"]:
        print(
            f"error: sha256 mismatch: expected {args.sha256.strip().lower()}, got "
            f"{summary['sha256']}; the archive differs from the published one (re-download it)",
            file=sys.stderr,
        )
        return 1
    if args.sha256:
        print("sha256 matches")
    return 0


# --------------------------------------------------------------------------------------------
# verify


@dataclass
class VerifySettings:
    """Where a video's features are and what they should look like."""

    json_file: str
    feat_folder: str
    prefix: str = ""
    suffix: str = ""  # the config's dataset.feature_type
    ext: str = ".pt"
    dim: Optional[int] = None
    fps: Optional[float] = None  # overrides the JSON's per-video fps when set
    feat_stride: Optional[float] = None
    num_frames: Optional[float] = None
    splits: tuple[str, ...] = ()  # () = every video of the JSON


@dataclass
class Report:
    """Failures per check: check -> [(video id, detail)]."""

    problems: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)  # videos affected per check
    checked: int = 0
    ok: int = 0
    channels: Counter = field(default_factory=Counter)

    def add(self, check: str, video_id: str, detail: str, videos: int = 1) -> None:
        self.problems.setdefault(check, []).append((video_id, detail))
        self.counts[check] += videos


SEVERITY = {
    "missing file": "error",
    "unreadable file": "error",
    "not a T x C array": "error",
    "wrong channel count": "error",
    "NaN / Inf values": "error",
    "unknown fps": "error",
    "fps/stride mismatch": "error",
    "too short for duration": "warning",
    "too long for duration": "warning",
    "default fps overrides JSON": "warning",
    "not in the annotations": "info",
}


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
        raise ValueError("verify needs the annotations: --config CONFIG or --json ANNOTATIONS.json")
    return s


def read_stored(path: str, ext: str) -> np.ndarray:
    """The array stored in one feature file (any shape / dtype; checked by the caller)."""
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise ValueError("the .npz archive holds no array")
            return archive["feats" if "feats" in archive.files else archive.files[0]]
    if ext == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"expected a saved tensor, got {type(obj).__name__}")
        return obj.detach().float().numpy()
    raise ValueError(f"unsupported extension {ext!r}; use .pt, .npy or .npz")


def _reader(s: VerifySettings, stack: contextlib.ExitStack):
    """video id -> stored array (FileNotFoundError when absent), from a folder or one HDF5 store."""
    if s.feat_folder.lower().endswith((".h5", ".hdf5")):
        import h5py

        if not os.path.isfile(s.feat_folder):
            raise FileNotFoundError(f"feature file not found: {s.feat_folder}")
        store = stack.enter_context(h5py.File(s.feat_folder, "r"))

        def read_h5(video_id: str) -> np.ndarray:
            key = f"{s.prefix}{video_id}"
            if key not in store:
                raise FileNotFoundError(f"key {key!r} in {s.feat_folder}")
            return np.asarray(store[key][()])

        return read_h5
    if not os.path.isdir(s.feat_folder):
        raise FileNotFoundError(f"feature folder not found: {s.feat_folder}")

    def read_file(video_id: str) -> np.ndarray:
        path = os.path.join(s.feat_folder, f"{s.prefix}{video_id}{s.suffix}{s.ext}")
        if not os.path.isfile(path):
            raise FileNotFoundError(path)
        return read_stored(path, s.ext)

    return read_file


def _check_array(feats: np.ndarray, video_id: str, s: VerifySettings, report: Report) -> bool:
    """Shape, channels and finiteness of one stored array; True when usable."""
    if feats.ndim != 2 or feats.shape[0] == 0:
        report.add("not a T x C array", video_id, f"shape {tuple(feats.shape)}")
        return False
    report.channels[feats.shape[1]] += 1
    if s.dim is not None and feats.shape[1] != s.dim:
        hint = " (stored C x T? must be T x C)" if feats.shape[0] == s.dim else ""
        report.add(
            "wrong channel count", video_id, f"{feats.shape[1]} channels, expected {s.dim}{hint}"
        )
        return False
    bad = ~np.isfinite(feats)
    if bad.any():
        t, c = np.argwhere(bad)[0].tolist()
        report.add(
            "NaN / Inf values",
            video_id,
            f"{int(bad.sum())} of {feats.size} values, first "
            f"{feats[t, c]} at feature {t}, channel {c}",
        )
        return False
    return True


def _check_length(
    num_feats: int, video: dict, video_id: str, fps: float, s: VerifySettings, report: Report
) -> Optional[float]:
    """Features vs the annotated duration; returns T / T_expected (None when not checkable)."""
    duration = video.get("duration")
    if not duration or s.feat_stride is None or s.num_frames is None:
        return None
    covered = ((num_feats - 1) * s.feat_stride + s.num_frames) / fps  # seconds the features span
    expected = max(1, math.floor((duration * fps - s.num_frames) / s.feat_stride) + 1)
    tol = max(SHORT_TOL_FEATS * s.feat_stride / fps, SHORT_TOL_FRAC * duration)
    if covered < duration - tol:
        late = sum(a["segment"][1] > covered for a in video.get("annotations", []))
        report.add(
            "too short for duration",
            video_id,
            f"{num_feats} features cover {covered:.1f} s of "
            f"{duration:.1f} s ({late} annotated segments end later)",
        )
    elif covered > duration + tol:
        report.add(
            "too long for duration",
            video_id,
            f"{num_feats} features cover {covered:.1f} s, the video lasts {duration:.1f} s",
        )
    return num_feats / expected


def load_database(json_file: str) -> dict:
    """The `database` mapping of an ActivityNet-style annotation JSON, or a ValueError naming it."""
    try:
        with open(json_file) as f:
            database = json.load(f).get("database")
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{json_file}: not an ActivityNet-style annotation JSON ({exc})") from None
    if not isinstance(database, dict):
        raise ValueError(f"{json_file}: expected a 'database' mapping of video id -> video")
    return database


def verify(s: VerifySettings) -> Report:
    """Run every check on the videos of `s.json_file` (see the module docstring)."""
    database = load_database(s.json_file)
    wanted = {x.lower() for x in s.splits}
    videos = {
        v: x
        for v, x in database.items()
        if not wanted or str(x.get("subset", "")).lower() in wanted
    }
    report, ratios = Report(), []
    with contextlib.ExitStack() as stack:
        read = _reader(s, stack)
        for video_id, video in videos.items():
            ratio = _verify_video(read, video_id, video, s, report)
            ratios += [ratio] if ratio is not None else []
    _check_rate(ratios, s, report)
    _check_extra_files(set(database), s, report)
    return report


def _verify_video(
    read, video_id: str, video: dict, s: VerifySettings, report: Report
) -> Optional[float]:
    """Every per-video check; returns T / T_expected when the length could be checked."""
    report.checked += 1
    try:
        feats = read(video_id)
    except FileNotFoundError as exc:
        report.add("missing file", video_id, f"expected {exc}")
        return None
    except Exception as exc:  # corrupt files raise many different types; report them alike
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        first = text if len(text) <= 100 else text[:97] + "..."
        report.add("unreadable file", video_id, f"{type(exc).__name__}: {first}")
        return None
    if not _check_array(feats, video_id, s, report):
        return None
    fps = s.fps or video.get("fps")
    if s.fps and video.get("fps") and abs(video["fps"] - s.fps) > 1e-6:
        report.add("default fps overrides JSON", video_id, f"JSON fps {video['fps']}, used {s.fps}")
    if not fps:
        report.add("unknown fps", video_id, "no 'fps' in the JSON; set dataset.default_fps / --fps")
        return None
    report.ok += 1
    return _check_length(feats.shape[0], video, video_id, float(fps), s, report)


def _check_rate(ratios: list[float], s: VerifySettings, report: Report) -> None:
    """A global fps / feat_stride mismatch: most videos have the wrong number of features (a few
    truncated videos are `too short`, not a mismatch)."""
    ratios_arr = np.asarray(ratios)  # [V] T / T_expected
    off = int((np.abs(ratios_arr - 1) > MISMATCH_TOL).sum())
    median = float(np.median(ratios_arr)) if len(ratios_arr) else 1.0
    if abs(median - 1) > MISMATCH_TOL and off > len(ratios_arr) / 2:
        report.add(
            "fps/stride mismatch",
            f"{off} of {len(ratios_arr)} videos",
            f"median {median:.2f}x the expected features; feat_stride {s.feat_stride:g} "
            f"looks like {s.feat_stride / median:.3g} (or fps is {1 / median:.2f}x off)",
            videos=off,
        )


def _check_extra_files(video_ids: set[str], s: VerifySettings, report: Report) -> None:
    if not os.path.isdir(s.feat_folder):
        return
    pattern = re.compile(
        re.escape(s.prefix) + r"(.+)" + re.escape(s.suffix) + re.escape(s.ext) + "$"
    )
    for name in sorted(os.listdir(s.feat_folder)):
        match = pattern.match(name)
        if match and match.group(1) not in video_ids:
            report.add("not in the annotations", match.group(1), name)


def format_report(report: Report, s: VerifySettings, examples: int = 1) -> str:
    """The summary table (one row per failing check) and a verdict line."""
    order = sorted(report.problems, key=list(SEVERITY).index)
    rows = [
        (
            check,
            SEVERITY[check],
            str(report.counts[check]),
            "; ".join(f"{v}: {d}" for v, d in report.problems[check][:examples]),
        )
        for check in order
    ]
    rows.append(("usable", "", str(report.ok), f"of {report.checked} videos"))
    widths = [
        max(len(r[i]) for r in rows + [("check", "severity", "videos", "")]) for i in range(3)
    ]
    lines = [f"{'check':<{widths[0]}}  {'severity':<{widths[1]}}  {'videos':>{widths[2]}}  example"]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    dims = ", ".join(f"{c} ({n} videos)" for c, n in report.channels.most_common(3))
    lines.append(
        f"channels: {dims or '-'}; fps {s.fps or 'from JSON'}, feat_stride {s.feat_stride}, "
        f"num_frames {s.num_frames}"
    )
    errors = sum(n for k, n in report.counts.items() if SEVERITY[k] == "error")
    lines.append(
        f"FAILED: {errors} problem(s) would break or spoil training"
        if errors
        else "OK: nothing that would break training"
    )
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    if not os.path.isfile(s.json_file):
        raise FileNotFoundError(f"annotation file not found: {s.json_file}")
    report = verify(s)
    print(format_report(report, s, examples=args.examples))
    if args.list:
        for check, items in report.problems.items():
            for video_id, detail in items:
                print(f"{SEVERITY[check]}: {check}: {video_id}: {detail}")
    return 1 if any(SEVERITY[k] == "error" for k in report.problems) else 0


# --------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
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
    ver.add_argument("--json", help="annotation JSON (default: the config's)")
    ver.add_argument("--prefix", help="file-name prefix (dataset.file_prefix)")
    ver.add_argument(
        "--suffix", help="file-name suffix before the extension (dataset.feature_type)"
    )
    ver.add_argument("--ext", choices=(".pt", ".npy", ".npz"), help="file extension")
    ver.add_argument("--dim", type=int, help="expected channels C")
    ver.add_argument("--fps", type=float, help="fps of every video (default: the JSON's)")
    ver.add_argument("--feat-stride", type=float, help="frames between features")
    ver.add_argument("--num-frames", type=float, help="frames per feature clip")
    ver.add_argument("--split", nargs="+", help="only these JSON subsets")
    ver.add_argument("--examples", type=int, default=1, help="examples per check in the table")
    ver.add_argument("--list", action="store_true", help="also list every problem")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_join(args) if args.command == "join" else run_verify(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
