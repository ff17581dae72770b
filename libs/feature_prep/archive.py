"""Join the parts of a split archive into one byte stream and extract it (see prepare_features.py).

Parts are read in sequence as one stream (`JoinedReader`, which hashes the bytes and tracks the
position for error messages); compression is recognised by its magic bytes; a truncated or
corrupt archive is a ValueError naming the byte offset and the part. Members are extracted
into a staging folder and renamed into place only after the whole archive checked out, so a
failure (corrupt archive, disk full) leaves no torn file under a final name.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from libs.utils.paths import check_output_dir
from libs.utils.processes import pid_alive


def natural_key(path: str) -> list:
    """'a.part10' sorts after 'a.part2' (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_parts(args_parts: Sequence[str], keep_order: bool) -> list[Path]:
    """The part files: as given, or `PREFIX*` when a single argument is not a file."""
    if len(args_parts) == 1 and not Path(args_parts[0]).is_file():
        prefix = Path(args_parts[0])
        parts = [p for p in prefix.parent.glob(glob.escape(prefix.name) + "*") if p.is_file()]
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
    head = raw.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def hash_parts(parts: Sequence[Path], show_progress: Optional[bool] = None) -> str:
    """sha256 of the joined parts (read once, before anything is extracted)."""
    from tqdm import tqdm

    reader = JoinedReader(parts)
    disable = not sys.stderr.isatty() if show_progress is None else not show_progress
    with tqdm(total=reader.total, unit="B", unit_scale=True, desc="sha256", disable=disable) as bar:
        reader.progress = bar
        buffer = bytearray(1 << 20)
        try:
            while reader.readinto(buffer):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read archive part {reader.parts[reader._index]}: "
                             f"{exc.strerror or exc}") from None
        finally:
            reader.close()
    return reader.sha256.hexdigest()


def _describe(exc: BaseException) -> str:
    """`Type: message` of a decoder error, without a second `error:` (zlib.error, lzma...)."""
    name = type(exc).__name__
    if name == "error":
        name = f"{type(exc).__module__} failure"
    return f"{name} ({exc})"


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: Path) -> None:
    """Extract one member with tarfile's "data" filter; an absolute name, a `..` component, a link
    out of the archive or a device / FIFO is refused as a ValueError naming the member."""
    name = member.name
    why = None
    if name.startswith(("/", "\\")) or os.path.isabs(name):
        why = "it has an absolute path"
    elif ".." in re.split(r"[/\\]", name):
        why = "its path contains '..'"
    else:
        try:
            tar.extract(member, staging, filter="data")
        except tarfile.FilterError as exc:
            why = f"{type(exc).__name__}: {exc}"
    if why is not None:
        raise ValueError(f"archive member {name!r} refused: {why} (it would land outside --out or "
                         "is a link, device or FIFO); this archive is not one to extract here")


def _extract_stream(reader: JoinedReader, staging: Path, parts: Sequence[Path]) -> int:
    """Extract the joined stream into `staging`; returns the regular files extracted.

    Raises:
        ValueError: the stream is not a complete, intact tar archive.
        OSError (with an errno): writing failed (disk full, permissions).
    """
    raw = io.BufferedReader(reader, 1 << 20)
    files = 0
    try:
        stream = CountingReader(_decompressed(raw))
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                _extract_member(tar, member, staging)
                files += member.isfile()
            stream.end = tar.offset  # where the end-of-archive blocks start
        # read to the very end: the decompressor verifies its CRC, and tarfile, which stops
        # quietly at a garbled header, is caught by the data that follows its "end"
        while stream.read(1 << 20) or raw.read(1 << 20):
            pass
        slack = tarfile.RECORDSIZE + 2 * tarfile.BLOCKSIZE  # tar's zero padding at the end
        if stream.trailing_data or stream.count - stream.end > slack:
            raise tarfile.ReadError(f"{stream.count - stream.end:,} bytes of data after the "
                                    f"archive's last member (byte {stream.end:,} of the tar)")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        if type(exc) is OSError and exc.errno is not None:
            raise  # a file-system error (disk full, permissions), not a bad archive
        where = reader.part_at(max(reader.position - 1, 0))
        raise ValueError(
            f"archive truncated or corrupt (found after reading {reader.position:,} of "
            f"{reader.total:,} bytes, in {where}): {_describe(exc)}. Is a part missing, out of "
            f"order or incompletely downloaded? Parts: {[p.name for p in parts]}"
        ) from None
    return files


def _symlink_on_the_way(out: Path, rel: Path) -> Optional[Path]:
    """The first existing folder of `out/rel` (below `out`) that is a symbolic link, or None."""
    path = out
    for part in rel.parts:
        path = path / part
        if path.is_symlink():
            return path
    return None


def _plan_moves(staging: Path, out: Path, parts: Sequence[Path]) -> list[tuple[Path, list[str]]]:
    """[(folder relative to out, entry names)] of the staging folder, checked before anything moves:
    no entry goes through a symbolic link inside `out` (it would land outside), none replaces an
    input part. Raises ValueError naming the member."""
    plan = []
    for root, dirs, names in os.walk(staging):
        rel = Path(root).relative_to(staging)
        link = _symlink_on_the_way(out, rel)
        if link is not None:
            raise ValueError(f"archive folder {rel} would be written through the symbolic link {link} "
                             f"(to {os.readlink(link)}), outside --out {out}; remove the link or "
                             "extract into another --out")
        entries = [d for d in dirs if os.path.islink(os.path.join(root, d))] + names
        for name in entries:
            target = out / rel / name
            hit = [p for p in parts if target.exists() and os.path.samefile(target, p)]
            if hit:
                raise ValueError(f"archive member {rel / name} would replace the input part {hit[0]}: "
                                 "extract into another --out (not the folder of the parts)")
        plan.append((rel, entries))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return plan


def _move_into(staging: Path, out: Path, moved: list, parts: Sequence[Path] = ()) -> None:
    """Rename every extracted entry of `staging` to its place in `out` (folders are created),
    after `_plan_moves` checked them all; each complete file renamed is appended to `moved` (for
    the message should a rename fail)."""
    for rel, entries in _plan_moves(staging, out, parts):
        (out / rel).mkdir(exist_ok=True)
        for name in entries:
            os.replace(staging / rel / name, out / rel / name)
            moved.append(rel / name)


STAGING_PREFIX = ".extracting-"  # + "<pid>-<random>": the folder one join extracts into


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders in `out` left by a join that was killed (its pid is gone).

    A live join's staging folder (another process extracting into `out` now) is left alone.
    Returns the folders removed.
    """
    removed = []
    for path in sorted(out.glob(STAGING_PREFIX + "*")) if out.is_dir() else []:
        pid = path.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if path.is_dir() and not path.is_symlink() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def join_and_extract(
    parts: Sequence[Path], out: Path, show_progress: Optional[bool] = None
) -> dict:
    """Extract the archive formed by `parts` (in this order) into `out`.

    Members go to a hidden staging folder inside `out` and are renamed into place only once the
    whole archive has been read and checked: a failure leaves nothing of this archive in `out`
    (no torn file under a final name; should a rename itself fail, the message lists the
    complete files already in place). A staging folder left by a join that was killed
    (kill -9, power cut) is removed by the next join into the same `out`.

    Returns:
        {"files": extracted regular files, "bytes": joined size, "sha256": hex digest}.
    Raises:
        ValueError: `out` is a file; the joined stream is not a complete, intact tar archive (a
            missing, truncated or misordered part); writing failed (disk full, permissions).
    """
    from tqdm import tqdm

    check_output_dir(out, "--out", "to extract into")
    for stale in remove_stale_staging(out):
        print(f"removed {stale}: the staging folder of an earlier join that was stopped",
              file=sys.stderr)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    except OSError as exc:
        raise ValueError(f"cannot create the folder --out {out}: {exc.strerror or exc}") from None
    disable = not sys.stderr.isatty() if show_progress is None else not show_progress
    reader, moved = JoinedReader(parts), []
    try:
        with tqdm(total=reader.total, unit="B", unit_scale=True, desc="extract", disable=disable) as bar:
            reader.progress = bar
            files = _extract_stream(reader, staging, parts)
        _move_into(staging, out, moved, parts)
    except (ValueError, OSError) as exc:
        left = (f"{len(moved)} complete file(s) were already moved into place: "
                f"{[str(m) for m in moved[:5]]}{' ...' if len(moved) > 5 else ''}; the rest was removed"
                if moved else f"Nothing was extracted into {out}")
        if isinstance(exc, ValueError):
            raise ValueError(f"{exc}. {left}.") from None
        raise ValueError(
            f"cannot write the extracted files into {out}: {exc.strerror or exc} (errno "
            f"{exc.errno}); free space there or choose another --out. {left}."
        ) from None
    finally:
        reader.close()
        shutil.rmtree(staging, ignore_errors=True)
    return {"files": files, "bytes": reader.position, "sha256": reader.sha256.hexdigest()}
