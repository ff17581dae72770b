"""Check a feature folder against an annotation JSON (see prepare_features.py for the checks).

Files are found and read, and arrays judged, by the library (`libs.datasets.features`), the JSON
by `libs.core.annotations`: what passes here is what training reads. The difference is what
happens to a problem: training raises the first one, `verify` counts them all per check.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from libs.core.annotations import is_number, read_annotations, video_length_problem
from libs.datasets import features as featio

MISMATCH_TOL = 0.10  # |median(T / T_expected) - 1| above this: fps / feat_stride mismatch
SHORT_TOL_FEATS = 3  # per-video length tolerance: max(3 features, 2 % of the duration)
SHORT_TOL_FRAC = 0.02

SEVERITY = {
    "missing file": "error",
    "unreadable file": "error",
    "not a T x C array": "error",
    "not plain numbers": "error",
    "bad fps / duration": "error",
    "wrong channel count": "error",
    "NaN / Inf values": "error",
    "unknown fps": "error",
    "fps/stride mismatch": "error",
    "too short for duration": "warning",
    "too long for duration": "warning",
    "default fps overrides JSON": "warning",
    "not in the annotations": "info",
}


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

    @property
    def failed(self) -> bool:
        """True when an error would break (or silently spoil) training."""
        return any(SEVERITY[k] == "error" for k in self.problems)


def verify(s: VerifySettings) -> Report:
    """Run every check on the videos of `s.json_file` (see prepare_features.py)."""
    database = read_annotations(s.json_file).database
    wanted = {x.lower() for x in s.splits}
    videos = {  # read_annotations checked that every video is an object
        v: x
        for v, x in database.items()
        if not wanted or str(x.get("subset", "")).lower() in wanted
    }
    report, ratios = Report(), []
    with contextlib.ExitStack() as stack:
        read = featio.open_raw_reader(stack, s.feat_folder, s.prefix, s.suffix, s.ext)
        for video_id, video in videos.items():
            ratio = _verify_video(read, video_id, video, s, report)
            ratios += [ratio] if ratio is not None else []
    _check_rate(ratios, s, report)
    _check_extra_files(set(database), s, report)
    return report


def _verify_video(
    read: Callable[[str], np.ndarray], video_id: str, video: dict, s: VerifySettings, report: Report
) -> Optional[float]:
    """Every per-video check; returns T / T_expected when the length could be checked."""
    report.checked += 1
    try:
        feats = read(video_id)
    except FileNotFoundError as exc:
        report.add("missing file", video_id, f"expected {exc}")
        return None
    except Exception as exc:  # corrupt files raise many different types; report them alike
        report.add("unreadable file", video_id, f"{type(exc).__name__}: {featio.short_error(exc, 100)}")
        return None
    if not _check_array(feats, video_id, s, report):
        return None
    keys = ("duration",) if s.fps else ("fps", "duration")  # --default-fps replaces the JSON's fps
    bad = [f"'{k}' must be a positive number, got {video[k]!r}" for k in keys
           if k in video and not _positive(video[k])]
    if bad:  # what training refuses (a string "30" is not a number there either)
        report.add("bad fps / duration", video_id, "; ".join(bad))
        return None
    fps = s.fps or video.get("fps")
    if s.fps and _positive(video.get("fps")) and abs(video["fps"] - s.fps) > 1e-6:
        report.add("default fps overrides JSON", video_id, f"JSON fps {video['fps']}, used {s.fps}")
    if not fps:
        report.add("unknown fps", video_id, "no 'fps' in the JSON; set dataset.default_fps / --fps")
        return None
    too_long = video_length_problem(video["duration"], float(fps)) if "duration" in video else None
    if too_long:
        report.add("bad fps / duration", video_id, too_long)
        return None
    report.ok += 1
    return _check_length(feats.shape[0], video, video_id, float(fps), s, report)


def _positive(x: object) -> bool:
    """A finite number > 0 (not a bool, not a string such as "30")."""
    return is_number(x) and math.isfinite(x) and x > 0


def _check_array(feats: np.ndarray, video_id: str, s: VerifySettings, report: Report) -> bool:
    """Shape, channels and finiteness of one stored array (the library's checks); True when usable."""
    problem = featio.find_problem(feats, s.dim)
    if problem is not None and problem.kind == "dtype":
        report.add("not plain numbers", video_id, f"dtype {problem.dtype}, shape {problem.shape}")
        return False
    if problem is not None and problem.kind in ("not_2d", "empty"):
        report.add("not a T x C array", video_id, f"shape {problem.shape}")
        return False
    report.channels[feats.shape[1]] += 1
    if problem is None:
        return True
    if problem.kind == "channels":
        hint = " (stored C x T? must be T x C)" if feats.shape[0] == s.dim else ""
        detail = f"{feats.shape[1]} channels, expected {s.dim}{hint}"
        report.add("wrong channel count", video_id, detail)
    else:
        detail = (f"{problem.count} of {feats.size} values, first {np.float32(problem.value)} "
                  f"at feature {problem.t}, channel {problem.c}")
        report.add("NaN / Inf values", video_id, detail)
    return False


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
    """Feature files of videos the JSON does not list (info only)."""
    if not os.path.isdir(s.feat_folder):
        return
    for name in sorted(os.listdir(s.feat_folder)):
        video_id = featio.video_id_of(name, s.prefix, s.suffix, s.ext)
        if video_id is not None and video_id not in video_ids:
            report.add("not in the annotations", video_id, name)


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
