"""Feature-file IO: where a video's features live, how they are read, and how they are checked.

On disk a video's features are stored as a T x C array (one row per clip). Supported stores:
  - one file per video: `feat_folder/(file_prefix + video_id + feature_type + file_ext)` with
    file_ext `.pt` (a saved tensor), `.npy`, or `.npz` (key 'feats' if present, else the first array);
  - one HDF5 file for all videos (`feat_folder` itself ends in `.h5` / `.hdf5`), one dataset per
    video under the key `file_prefix + video_id` (the reference ANet/HACS layout: no feature_type).
Every reader returns a float32 [C, T] tensor, and every failure names the file.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from libs.utils.io import atomic_write
from libs.utils.paths import check_file_name, refuse_special, refuse_symlink

FILE_EXTS = (".pt", ".npy", ".npz")
H5_EXTS = (".h5", ".hdf5")


class FeatureFileError(ValueError, RuntimeError):
    """A feature file is missing, unreadable, or holds something other than a finite T x C array.

    A ValueError, so train.py / eval.py report it as one `error: ...` line (exit 2); still a
    RuntimeError for callers that catch it as one.
    """

    def __init__(self, message: str = ""):
        # A DataLoader worker re-raises as FeatureFileError("Caught FeatureFileError in DataLoader
        # worker process N.\nOriginal Traceback ...\n<module>.FeatureFileError: <message>"): keep
        # only the original one-line message.
        marker = f"{type(self).__name__}: "
        message = str(message)
        if message.startswith("Caught ") and "\nOriginal Traceback" in message and marker in message:
            first = message.split("\n", 1)[0]  # "Caught FeatureFileError in DataLoader worker process 0."
            where = first.split(" ", 2)[-1].rstrip(".")  # "in DataLoader worker process 0"
            message = f"{message.rsplit(marker, 1)[1].strip()} (raised {where})"
        super().__init__(message)


def is_single_file_store(feat_folder: str) -> bool:
    """True when `feat_folder` is one HDF5 file holding every video (not a folder)."""
    return feat_folder.lower().endswith(H5_EXTS)


def feature_path(feat_folder: str, video_id: str, file_prefix: str = "", feature_type: str = "",
                 file_ext: str = ".pt") -> str:
    """Path of one video's feature file; `feature_type` is a file-name suffix, not a key.

    Raises:
        ValueError: the video id is absolute, `..`, or holds a path separator (it would point
            outside `feat_folder`).
    """
    check_file_name(video_id, "video id", fix="video ids must be plain names inside feat_folder")
    return os.path.join(feat_folder, f"{file_prefix}{video_id}{feature_type}{file_ext}")


def check_name_part(part: str, option: str) -> str:
    """`part` unchanged if it can be a piece of a file name (a prefix, suffix or extension)."""
    bad = [sep for sep in ("/", os.sep, os.altsep, "\x00") if sep and sep in part]
    if bad or part == "..":
        why = "it is '..'" if part == ".." else f"it contains {bad[0]!r}"
        raise ValueError(f"{option} {part!r} must be part of a file name: {why}; give a plain "
                         "prefix/suffix without '/' (the files are written into --out)")
    return part


def output_feature_path(out_dir: str, video_id: str, file_prefix: str = "", feature_type: str = "",
                        file_ext: str = ".pt") -> str:
    """`feature_path` for a file about to be WRITTEN: prefix, suffix and extension must be plain
    name parts, the whole name one file name (<= 255 bytes), and an existing target a regular file
    (not a symbolic link, FIFO or device)."""
    check_name_part(file_prefix, "--file-prefix")
    check_name_part(feature_type, "--feature-type")
    check_name_part(file_ext, "--file-ext")
    path = feature_path(out_dir, video_id, file_prefix, feature_type, file_ext)
    check_file_name(os.path.basename(path), f"feature file name of video {video_id!r}",
                    fix="use a shorter video id, --file-prefix or --feature-type")
    what = f"feature file of video {video_id!r}"
    refuse_symlink(path, what)
    refuse_special(path, what)
    return path


def h5_key(video_id: str, file_prefix: str = "") -> str:
    """Key of one video inside a one-file HDF5 store (reference: prefix + id)."""
    return f"{file_prefix}{video_id}"


def video_id_of(file_name: str, file_prefix: str = "", feature_type: str = "",
                file_ext: str = ".pt") -> Optional[str]:
    """The video id a feature file name stands for (inverse of `feature_path`), or None."""
    head, tail = file_prefix, f"{feature_type}{file_ext}"
    if len(file_name) <= len(head) + len(tail) or not (file_name.startswith(head) and file_name.endswith(tail)):
        return None
    return file_name[len(head): len(file_name) - len(tail)]


def read_array(path: str, file_ext: str) -> np.ndarray:
    """Read the stored array of one file (any dtype/shape; checked by the caller)."""
    if file_ext == ".npy":
        return np.load(path, allow_pickle=False)
    if file_ext == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise FeatureFileError(f"feature file {path}: the .npz archive holds no array")
            key = "feats" if "feats" in archive.files else archive.files[0]
            return archive[key]
    if file_ext == ".pt":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, Tensor):
            raise FeatureFileError(f"feature file {path}: expected a saved tensor, got {type(obj).__name__}")
        return obj.detach().float().numpy()
    raise FeatureFileError(f"feature file {path}: unsupported extension {file_ext!r}; use one of {FILE_EXTS} "
                           f"or point feat_folder at one {'/'.join(H5_EXTS)} file")


@dataclass(frozen=True)
class FeatureProblem:
    """What is wrong with a stored feature array; `kind` is one of:

    dtype (shape; not plain numbers: a structured, object, string or complex array),
    not_2d (shape), empty (shape), channels (shape; expected = input_dim),
    nonfinite (count of NaN/Inf values, the first `value` at feature `t`, channel `c`).
    """

    kind: str
    shape: tuple[int, ...]
    expected: Optional[int] = None
    dtype: str = ""
    count: int = 0
    value: float = 0.0
    t: int = 0
    c: int = 0


def find_problem(feats: np.ndarray, input_dim: Optional[int] = None) -> Optional[FeatureProblem]:
    """The first problem of a stored [T, C] array (None: usable). Finiteness is judged in float32,
    the dtype the model reads, so a float64 value beyond float32's range counts as Inf."""
    return _shape_problem(feats, input_dim) or _finite_problem(_as_read(feats))


def _shape_problem(feats: np.ndarray, input_dim: Optional[int]) -> Optional[FeatureProblem]:
    shape = tuple(feats.shape)
    if feats.dtype.kind not in "biuf":  # np.asarray(..., float32) would raise TypeError or drop parts
        return FeatureProblem("dtype", shape, dtype=str(feats.dtype))
    if feats.ndim != 2:
        return FeatureProblem("not_2d", shape)
    if feats.shape[0] == 0:
        return FeatureProblem("empty", shape)
    if input_dim is not None and feats.shape[1] != input_dim:
        return FeatureProblem("channels", shape, expected=input_dim)
    return None


def _as_read(feats: np.ndarray) -> np.ndarray:
    """[T, C] float32, what the loader hands on (no copy when the file already holds float32)."""
    with np.errstate(over="ignore"):
        return np.asarray(feats, dtype=np.float32)


def _finite_problem(as_read: np.ndarray) -> Optional[FeatureProblem]:
    finite = np.isfinite(as_read)  # [T, C]
    if finite.all():
        return None
    t, c = np.argwhere(~finite)[0].tolist()
    return FeatureProblem("nonfinite", tuple(as_read.shape), count=int((~finite).sum()),
                          value=float(as_read[t, c]), t=t, c=c)


def check_features(feats: np.ndarray, where: str, input_dim: Optional[int] = None) -> Tensor:
    """Validate a stored T x C array and return it as a float32 [C, T] tensor.

    Args:
        feats: the stored array, expected [T, C].
        where: the file (and key) it came from, used in every error message.
        input_dim: expected C; None skips the check.
    Returns:
        [C, T] float32 contiguous tensor.
    """
    problem = _shape_problem(feats, input_dim)
    as_read = None if problem else _as_read(feats)  # [T, C] float32, converted once
    problem = problem or _finite_problem(as_read)
    if problem is not None:
        raise FeatureFileError(f"feature file {where}: {_describe(problem)}")
    return torch.from_numpy(np.ascontiguousarray(as_read.T))  # [C, T]


def _describe(p: FeatureProblem) -> str:
    """The error text of one problem (after `feature file <where>: `)."""
    if p.kind == "dtype":
        return (f"holds an array of dtype {p.dtype} (shape {p.shape}); expected a T x C array of plain "
                "numbers (float32): save the feature matrix itself, not a record array")
    if p.kind == "not_2d":
        return f"expected a 2-D T x C array, got shape {p.shape}"
    if p.kind == "empty":
        return (f"holds 0 features (shape {p.shape}); is the video shorter than one feature clip? re-extract it "
                "or add its id to dataset.ignore_videos")
    if p.kind == "channels":
        hint = " (stored as C x T? it must be T x C)" if p.shape[0] == p.expected else ""
        return f"has {p.shape[1]} channels but dataset.input_dim = {p.expected}{hint}"
    n = p.shape[0] * p.shape[1]
    return (f"contains NaN or Inf values ({p.count} of {n}; the first is {np.float32(p.value)} at feature {p.t}, "
            f"channel {p.c})")


def load_feature_file(path: str, input_dim: Optional[int] = None) -> Tensor:
    """Load one per-video feature file (.pt / .npy / .npz) as a float32 [C, T] tensor."""
    if not os.path.isfile(path):
        raise FeatureFileError(f"feature file not found: {path}")
    if os.path.getsize(path) == 0:
        raise FeatureFileError(f"feature file {path}: the file is empty (0 bytes)")
    file_ext = os.path.splitext(path)[1].lower()
    try:
        feats = read_array(path, file_ext)
    except FeatureFileError:
        raise
    except Exception as exc:  # corrupt archives raise many different types; report them uniformly
        raise FeatureFileError(f"feature file {path}: cannot be read: truncated or corrupt, or not a saved "
                               f"tensor/array ({type(exc).__name__}: {short_error(exc)})") from exc
    return check_features(feats, path, input_dim)


def short_error(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception message, at most `limit` characters (torch's run for pages)."""
    if "Weights only load failed" in str(exc):  # torch's text is about checkpoints, not features
        return "torch.load(weights_only=True) refused it: not a torch.save zip archive, or it pickles objects"
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_h5_features(h5_file: str, key: str, input_dim: Optional[int] = None) -> Tensor:
    """Load one video from a one-file HDF5 store as a float32 [C, T] tensor."""
    import h5py  # optional dependency: only needed for HDF5 stores

    if not os.path.isfile(h5_file):
        raise FeatureFileError(f"feature file not found: {h5_file}")
    try:
        with h5py.File(h5_file, "r") as fid:
            if key not in fid:
                raise FeatureFileError(f"feature file {h5_file}: has no key {key!r}")
            feats = np.asarray(fid[key][()])
    except FeatureFileError:
        raise
    except Exception as exc:
        raise FeatureFileError(f"feature file {h5_file}: cannot be read ({type(exc).__name__}: "
                               f"{short_error(exc)})") from exc
    return check_features(feats, f"{h5_file}[{key!r}]", input_dim)


def open_raw_reader(stack: contextlib.ExitStack, feat_folder: str, file_prefix: str = "",
                    feature_type: str = "", file_ext: str = ".pt") -> Callable[[str], np.ndarray]:
    """video id -> its stored array, unchecked (for tools that report problems instead of raising).

    A one-file HDF5 store is opened once and closed with `stack`. A missing video raises
    FileNotFoundError naming the expected file or key; a bad file raises whatever its reader does.
    """
    if is_single_file_store(feat_folder):
        import h5py

        if not os.path.isfile(feat_folder):
            raise FileNotFoundError(f"feature file not found: {feat_folder}")
        try:
            store = stack.enter_context(h5py.File(feat_folder, "r"))
        except OSError as exc:  # not an HDF5 file, truncated: h5py's message names no file
            raise FeatureFileError(f"feature file {feat_folder}: cannot be read as HDF5 ({short_error(exc)})") from None

        def read_h5(video_id: str) -> np.ndarray:
            key = h5_key(video_id, file_prefix)
            if key not in store:
                raise FileNotFoundError(f"key {key!r} in {feat_folder}")
            return np.asarray(store[key][()])

        return read_h5
    if not os.path.isdir(feat_folder):
        raise FileNotFoundError(f"feature folder not found: {feat_folder}")

    def read_file(video_id: str) -> np.ndarray:
        path = feature_path(feat_folder, video_id, file_prefix, feature_type, file_ext)
        if not os.path.isfile(path):
            raise FileNotFoundError(path)
        return read_array(path, file_ext)

    return read_file


def h5_keys(h5_file: str) -> set[str]:
    """Top-level keys of a one-file HDF5 store (used to check for missing videos up front)."""
    import h5py

    if not os.path.isfile(h5_file):
        raise FeatureFileError(f"feature file not found: {h5_file}")
    try:
        with h5py.File(h5_file, "r") as fid:
            return set(fid.keys())
    except Exception as exc:  # not an HDF5 file, truncated, ...
        raise FeatureFileError(f"feature file {h5_file}: cannot be read as HDF5 ({type(exc).__name__}: "
                               f"{short_error(exc)})") from exc


def save_features(path: str, feats: np.ndarray) -> None:
    """Write a T x C float32 array in the format given by the path's extension (.pt / .npy / .npz),
    atomically; a symbolic link, FIFO or device at `path` is refused, never written through."""
    file_ext = os.path.splitext(path)[1].lower()
    feats = np.ascontiguousarray(feats, dtype=np.float32)  # [T, C]
    if file_ext not in (".pt", ".npy", ".npz"):
        raise ValueError(f"cannot write features to {path}: extension must be one of {FILE_EXTS}")
    with atomic_write(path, "wb") as f:
        if file_ext == ".pt":
            torch.save(torch.from_numpy(feats), f)
        elif file_ext == ".npy":
            np.save(f, feats)
        else:
            np.savez(f, feats=feats)
