"""libs/engine/run_lock.py: one writer per run folder, checked with a real second process."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libs.core.config import load_config
from libs.engine.run_folder import make_run_folder
from libs.engine.run_lock import LOCK_NAME, RunLock, RunLockedError, is_locked, read_owner

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
sys.path.insert(0, {repo!r})
from libs.engine.run_lock import RunLock
with RunLock({folder!r}):
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(folder: Path) -> subprocess.Popen:
    """A second process that holds the lock of `folder` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), folder=str(folder))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_file_names_owner_and_is_released(tmp_path):
    with RunLock(tmp_path) as lock:
        owner = read_owner(tmp_path)
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and lock.held
        assert is_locked(tmp_path) is None  # our own lock does not block us
    assert not (tmp_path / LOCK_NAME).exists()


def test_released_on_exception(tmp_path):
    with pytest.raises(KeyError):
        with RunLock(tmp_path):
            raise KeyError("boom")
    assert not (tmp_path / LOCK_NAME).exists()


def test_second_process_is_refused_naming_the_pid(tmp_path):
    proc = _holder(tmp_path)
    try:
        assert is_locked(tmp_path)["pid"] == proc.pid
        with pytest.raises(RunLockedError, match=f"in use by pid {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    # killed with SIGKILL: the lock file remains, but its owner is gone -> stale, taken over
    assert (tmp_path / LOCK_NAME).exists() and is_locked(tmp_path) is None
    with RunLock(tmp_path):
        assert read_owner(tmp_path)["pid"] == os.getpid()


def test_stale_lock_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with RunLock(tmp_path):
        pass
    assert "stale lock" in caplog.text


def test_lock_of_another_host_is_refused(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(RunLockedError, match="pid 1 on elsewhere.example"):
        RunLock(tmp_path).acquire()


def test_new_run_folder_is_locked_from_its_creation(tmp_path):
    cfg = load_config(data={"output_folder": str(tmp_path)}, path="configs/my_cfg.yaml")
    folder, lock = make_run_folder(cfg, "exp")
    assert lock.held and read_owner(folder)["pid"] == os.getpid()
    script = f"import sys; sys.path.insert(0, {str(REPO)!r})\nfrom libs.engine.run_lock import RunLock\nRunLock({str(folder)!r}).acquire()"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and f"in use by pid {os.getpid()}" in out.stderr
    lock.release()
    assert read_owner(folder) is None


def test_overwrite_refused_while_another_process_trains_there(tmp_path):
    cfg = load_config(data={"output_folder": str(tmp_path)}, path="configs/my_cfg.yaml")
    folder, lock = make_run_folder(cfg, "exp")
    lock.release()  # this run ends; another process trains there
    proc = _holder(folder)
    try:
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            make_run_folder(cfg, "exp", overwrite=True)
        assert (folder / "config.yaml").is_file()  # nothing deleted
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.05)
    assert make_run_folder(cfg, "exp", overwrite=True)[0] == folder  # the holder is gone


def test_second_resume_of_one_run_is_refused(tmp_path, capsys, in_process):
    """train.py --resume into a folder another live process holds: one error line, exit 2."""
    import train

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "last.pth").write_bytes(b"unused: the lock is checked first")
    proc = _holder(folder)
    try:
        rc = train.main([str(REPO / "configs/demo_thumos_dbm.yaml"), "--resume", str(folder / "last.pth"), "--device", "cpu"])
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err
    assert rc == 2 and f"in use by pid {proc.pid}" in err and "Traceback" not in err, err[-2000:]
