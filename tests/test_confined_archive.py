"""`tools/prepare_features.py join` writes only inside --out (issue 15): a member never replaces an
input part, never goes through a symbolic link inside --out, and a refused member (absolute, `..`,
absolute link, device, FIFO) is named with the reason, not reported as a corrupt archive."""
import io
import os
import tarfile
from pathlib import Path

import pytest

from libs.commands import prepare_features as pf


def _tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """An uncompressed tar of `members` (regular files get 4 bytes 'data')."""
    with tarfile.open(path, "w") as tar:
        for info in members:
            if info.isfile():
                info.size = 4
                tar.addfile(info, io.BytesIO(b"data"))
            else:
                tar.addfile(info)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _join(capsys, argv) -> str:
    rc = pf.main(["join", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error: ") == 1 and "Traceback" not in err, err
    assert "truncated or corrupt" not in err, err
    return err


def test_a_member_named_like_its_part_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    part = _tar(out / "self.tar.part0", [_member("a.npy"), _member("self.tar.part0")])
    before = part.read_bytes()
    err = _join(capsys, [str(out / "self.tar.part"), "--out", str(out)])
    assert f"archive member self.tar.part0 would replace the input part {part}" in err, err
    assert part.read_bytes() == before and not (out / "a.npy").exists()  # nothing moved


def test_a_symlinked_folder_inside_out_is_refused(tmp_path, capsys):
    out, victim = tmp_path / "o", tmp_path / "v"
    out.mkdir()
    victim.mkdir()
    os.symlink(victim, out / "feats")
    part = _tar(tmp_path / "a.tar", [_member("feats/evil.npy")])
    err = _join(capsys, [str(part), "--out", str(out)])
    assert f"archive folder feats would be written through the symbolic link {out / 'feats'}" in err, err
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("member,fragment", [
    (_member("../evil.npy"), "archive member '../evil.npy' refused: its path contains '..'"),
    (_member("/tmp/x"), "archive member '/tmp/x' refused: it has an absolute path"),
    (_member("ln", tarfile.SYMTYPE, "/etc/passwd"), "archive member 'ln' refused: AbsoluteLinkError"),
    (_member("up", tarfile.SYMTYPE, "../../x"), "archive member 'up' refused: LinkOutsideDestinationError"),
    (_member("dev", tarfile.CHRTYPE), "archive member 'dev' refused: SpecialFileError"),
    (_member("fifo", tarfile.FIFOTYPE), "archive member 'fifo' refused: SpecialFileError"),
])
def test_refused_members_are_named(tmp_path, capsys, member, fragment):
    part = _tar(tmp_path / "a.tar", [_member("ok.npy"), member])
    err = _join(capsys, [str(part), "--out", str(tmp_path / "o")])
    assert fragment in err and "Nothing was extracted" in err, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == []
    assert not (tmp_path / "evil.npy").exists() and not (tmp_path / "o" / "tmp").exists()


def test_verify_help_uses_the_new_option_names(capsys):
    with pytest.raises(SystemExit):
        pf.main(["verify", "--help"])
    out = capsys.readouterr().out
    for shown in ("--file-prefix FILE_PREFIX", "--feature-type FEATURE_TYPE", "--input-dim INPUT_DIM",
                  "--default-fps DEFAULT_FPS"):
        assert shown in out, out
    for old in ("--file-prefix PREFIX", "--feature-type SUFFIX", "--input-dim DIM", "--default-fps FPS"):
        assert old not in out, out
