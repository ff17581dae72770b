"""The CPU thread setting (libs/utils/threads.py): resolution, cgroup quotas, applying it, flags."""
import argparse
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from libs.core.config import load_config
from libs.utils import threads as th

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "custom_example.yaml")


def resolve(cli=None, config=None, env=None, root=Path("/nonexistent"), affinity=4):
    """resolve_threads on a fake root: no cgroup files, no /proc/stat (no load check)."""
    return th.resolve_threads(cli, config, env or {}, root=root, affinity=affinity)


def test_precedence_cli_env_config_auto():
    env = {th.ENV_VAR: "3", "OMP_NUM_THREADS": "5"}
    assert resolve(cli=2, config=6, env=env) == th.ThreadChoice(2, "--threads")
    assert resolve(config=6, env=env) == th.ThreadChoice(3, th.ENV_VAR)
    assert resolve(config=6, env={"OMP_NUM_THREADS": "5"}).count == 6
    assert resolve(env={"OMP_NUM_THREADS": "5"}) == th.ThreadChoice(5, "auto: OMP_NUM_THREADS")
    auto = resolve()
    assert auto.count == 4 and auto.source.startswith("auto: 4 CPUs in the affinity mask")


def test_zero_means_auto_at_every_level():
    env = {th.ENV_VAR: "0", "OMP_NUM_THREADS": "2,1"}  # nested list: the outer level counts
    assert resolve(cli=0, config=0, env=env) == th.ThreadChoice(2, "auto: OMP_NUM_THREADS")
    assert resolve(cli=0, config=0, env={th.ENV_VAR: "0"}).count == 4


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(env={th.ENV_VAR: "two"}), th.ENV_VAR),
        (dict(env={th.ENV_VAR: "-1"}), th.ENV_VAR),
        (dict(config=-2), "config key threads"),
        (dict(config=1.5), "config key threads"),
        (dict(env={"OMP_NUM_THREADS": "x"}), "OMP_NUM_THREADS"),
    ],
)
def test_bad_values_are_named(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a whole number of CPU threads >= 0"):
        resolve(**kwargs)


def test_cli_type_rejects_bad_counts():
    assert th.cli_count("3") == 3 and th.cli_count("0") == 0
    for bad in ("-1", "1.5", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="--threads"):
            th.cli_count(bad)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_of_own_group_or_ancestor(tmp_path):
    write(tmp_path, "proc/self/cgroup", "0::/jobs/job1\n")
    write(tmp_path, "sys/fs/cgroup/jobs/job1/cpu.max", "max 100000\n")
    assert th.cgroup_cpu_limit(tmp_path) is None
    write(tmp_path, "sys/fs/cgroup/jobs/cpu.max", "250000 100000\n")  # the parent limits us
    assert th.cgroup_cpu_limit(tmp_path) == 2.5
    write(tmp_path, "sys/fs/cgroup/jobs/job1/cpu.max", "150000 100000\n")  # the tighter one
    assert th.cgroup_cpu_limit(tmp_path) == 1.5
    choice = resolve(root=tmp_path, affinity=8)
    assert choice.count == 1 and "cgroup CPU quota 1.5 CPUs (affinity mask 8 CPUs)" in choice.source
    assert resolve(root=tmp_path, affinity=1).count == 1  # affinity tighter than the quota


def test_cgroup_v1_quota(tmp_path):
    write(tmp_path, "proc/self/cgroup", "5:memory:/x\n4:cpu,cpuacct:/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert th.cgroup_cpu_limit(tmp_path) is None  # -1 = unlimited
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n")
    assert th.cgroup_cpu_limit(tmp_path) == 3.0
    assert resolve(root=tmp_path, affinity=16).count == 3


def test_no_cgroup_files_and_garbage_are_ignored(tmp_path):
    assert th.cgroup_cpu_limit(tmp_path) is None
    write(tmp_path, "sys/fs/cgroup/cpu.max", "lots\n")  # no /proc: the mount root is read
    assert th.cgroup_cpu_limit(tmp_path) is None
    write(tmp_path, "sys/fs/cgroup/cpu.max", "50000 100000\n")
    assert th.cgroup_cpu_limit(tmp_path) == 0.5
    assert resolve(root=tmp_path, affinity=2).count == 1  # never below one thread


def test_affinity_mask_is_honoured(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert th.affinity_cores() == 1
    assert th.resolve_threads(env={}, root=Path("/nonexistent")).count == 1


def test_apply_sets_torch_and_auto_keeps_a_lower_count(monkeypatch):
    saved = torch.get_num_threads()
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        th.apply_threads(th.ThreadChoice(1, "test"))  # inter-op already started here: no error
        assert torch.get_num_threads() == 1
        assert th.setup_threads(cli=2).count == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        choice = th.setup_threads()  # auto never raises a count lowered before start
        assert choice.count == 1 and "kept the 1 set before start" in choice.source
    finally:
        torch.set_num_threads(saved)


_CHILD = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, {repo!r})
    from libs.utils.threads import setup_threads
    from libs.ops.scan import selective_scan
    choice = setup_threads()
    def run():
        u, dt, z = torch.randn(3, 1, 64, 256).unbind(0)
        A, B, C = -torch.rand(64, 16), torch.randn(1, 16, 256), torch.randn(1, 16, 256)
        selective_scan(u, dt, A, B, C, z=z, delta_softplus=True, backend="ext")
        return len(os.listdir("/proc/self/task"))
    before = len(os.listdir("/proc/self/task"))
    grew_1 = run() - before
    torch.set_num_threads(2)
    grew_2 = run() - before
    gomps = {{l.split()[-1] for l in open("/proc/self/maps") if "libgomp" in l}}
    print(choice.count, torch.get_num_interop_threads(), grew_1, grew_2, len(gomps))
""")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_fresh_process_applies_count_to_interop_and_cpp_kernels():
    """TAL_NUM_THREADS=1: inter-op 1, the C++ scan starts no OpenMP thread; at 2 it starts one,
    and libs._C shares torch's libgomp (one OpenMP runtime follows torch.set_num_threads)."""
    import libs.ops.scan as scan

    if not scan.ext_has_scan():
        pytest.skip("libs._C not built")
    env = dict(os.environ, TAL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD.format(repo=str(REPO))], env=env,
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    count, interop, grew_1, grew_2, gomps = map(int, out.stdout.split())
    assert (count, interop, grew_1, gomps) == (1, 1, 0, 1)
    assert grew_2 >= 1


def test_config_key_threads():
    assert load_config(data={"threads": 2}).threads == 2
    assert load_config(data={}, overrides=["threads=3"]).threads == 3
    with pytest.raises(ValueError, match="threads"):
        load_config(data={"threads": "many"})


@pytest.mark.parametrize(
    "module, argv",
    [
        ("train", ["cfg.yaml"]),
        ("eval", ["cfg.yaml", "ckpt.pth"]),
        ("infer", ["cfg.yaml", "ckpt.pth", "feats"]),
        ("rescore", ["raw.pt", "cfg.yaml"]),
    ],
)
def test_entry_points_accept_threads(module, argv, capsys):
    import importlib

    parse_args = importlib.import_module(f"libs.commands.{module}").parse_args
    assert parse_args(argv + ["--threads", "3"]).threads == 3
    assert parse_args(argv).threads is None
    with pytest.raises(SystemExit) as exc:
        parse_args(argv + ["--threads", "-2"])
    assert exc.value.code == 2 and "--threads must be a whole number" in capsys.readouterr().err


class _Threads(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.get_num_threads()


def test_dataloader_workers_run_one_thread():
    loader = torch.utils.data.DataLoader(_Threads(), num_workers=1, batch_size=None)
    assert list(loader) == [1, 1]


def _stat(cpu0: tuple, cpu1: tuple) -> str:
    row = lambda name, t: f"{name} {t[0]} 0 0 {t[1]} 0 0 0 0 0 0"  # user nice system idle ...
    return "\n".join(["cpu 1 2 3 4", row("cpu0", cpu0), row("cpu1", cpu1), "intr 5"]) + "\n"


def test_idle_cores_from_proc_stat(tmp_path):
    """Over the sample, cpu0 is busy with another process and cpu1 is idle: 1 idle core."""
    write(tmp_path, "proc/stat", _stat((100, 100), (100, 100)))

    def sleep(_):  # the sample interval: cpu0 +100 user ticks, cpu1 +100 idle ticks
        write(tmp_path, "proc/stat", _stat((200, 100), (100, 200)))

    assert th.idle_cores(tmp_path, {0, 1}, 0.1, sleep) == pytest.approx(1.0)
    write(tmp_path, "proc/stat", _stat((100, 100), (100, 100)))
    assert th.idle_cores(tmp_path, {1}, 0.1, sleep) == pytest.approx(1.0)  # only our CPUs
    assert th.idle_cores(tmp_path / "none", {0, 1}, 0.1, sleep) is None


def test_auto_leaves_the_cores_other_processes_keep_busy(tmp_path, monkeypatch):
    monkeypatch.setattr(th, "idle_cores", lambda root, cpus: 1.1)
    choice = resolve(root=tmp_path, affinity=2)
    assert choice.count == 1 and "1 kept busy by other processes" in choice.source
    monkeypatch.setattr(th, "idle_cores", lambda root, cpus: 0.0)
    assert resolve(root=tmp_path, affinity=2).count == 1  # never below one
    monkeypatch.setattr(th, "idle_cores", lambda root, cpus: 1.6)
    assert resolve(root=tmp_path, affinity=2).count == 2
    assert resolve(cli=2, root=tmp_path, affinity=2).count == 2  # explicit: no load check


class _Applied(Exception):
    """Raised by the stand-in of setup_threads: the entry point got that far."""


@pytest.mark.parametrize(
    "module, argv",
    [
        ("train", [CONFIG]),
        ("eval", [CONFIG, "ckpt.pth"]),
        ("infer", [CONFIG, "ckpt.pth", "feats"]),
        ("rescore", ["{raw}", CONFIG]),
    ],
)
def test_entry_points_apply_the_setting_first(module, argv, in_process, tmp_path, monkeypatch):
    """Each entry point hands --threads and the config's threads to setup_threads, before
    loading any data or model."""
    import importlib

    mod = importlib.import_module(f"libs.commands.{module}")
    calls = []

    def fake(cli, config):
        calls.append((cli, config))
        raise _Applied

    monkeypatch.setattr(mod, "setup_threads", fake)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(b"not read before the thread setting")
    argv = [a.format(raw=raw) for a in argv]
    args = mod.parse_args(argv + ["--threads", "3", "--opts", "threads=2"])
    with pytest.raises(_Applied):
        mod.run(args)
    assert calls == [(3, 2)]


def test_resume_with_another_thread_count_warns(caplog):
    from libs.utils.threads import ThreadChoice, warn_thread_change

    with caplog.at_level(logging.WARNING, logger="libs.utils.threads"):
        warn_thread_change(2, ThreadChoice(2, "config key threads"))
        warn_thread_change(0, ThreadChoice(1, "auto: test"))  # a run from before counts were stored
        assert not caplog.text
        warn_thread_change(2, ThreadChoice(1, "--threads"))
    assert "trained with 2 CPU threads and resumes with 1 (--threads)" in caplog.text
    assert "give --threads 2 for an exact continuation" in caplog.text
