"""One setting for the number of CPU threads, applied once at process start.

Where the count comes from, first match wins:
  1. `--threads N` on the command line;
  2. the environment variable `TAL_NUM_THREADS`;
  3. the config key `threads` (top level; 0 = auto);
  4. auto: `OMP_NUM_THREADS` when set, else the cores this process may use, i.e. the CPU
     affinity mask (`os.sched_getaffinity`, what `taskset` / a cpuset restricts) capped by a
     cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`, what
     `docker --cpus` sets), less the cores that other processes keep busy at start (sampled
     from /proc/stat for 0.15 s; never below 1). On 2 cores with one other busy process, two
     threads spend their time waiting for each other (2.6x slower in tools/benchmark.py
     threads, against 1.0x with one thread); a load that starts later is not seen.
A value of 0 at steps 1-3 means "auto" (step 4).

`apply_threads` gives the count to torch's intra-op pool (`torch.set_num_threads`), which is
also the OpenMP team size of our C++ kernels: libs._C parallelises with ATen's `parallel_for`
and binds to the libgomp that torch loaded (one OpenMP runtime per process), and to the
inter-op pool (`torch.set_num_interop_threads`, only possible before its first use).
DataLoader worker processes already run one thread each (torch sets it in every worker).

Why it matters: torch sizes its pools by the machine's cores, ignoring a cgroup quota, and
its OpenMP threads busy-wait at every barrier. When another process takes a core, a
two-thread region waits for its descheduled partner, and each barrier can cost a scheduler
time slice: runs slowed 10-47x under load (issue 16). See INSTALL.md "Threads".
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

logger = logging.getLogger(__name__)

ENV_VAR = "TAL_NUM_THREADS"
LOAD_SAMPLE_S = 0.15  # how long auto watches /proc/stat for other processes' CPU use
AUTO_HELP = "0 = auto: OMP_NUM_THREADS, else the CPU cores this process may use"


@dataclass(frozen=True)
class ThreadChoice:
    """The resolved thread count and where it came from (for the log)."""

    count: int  # >= 1
    source: str  # e.g. "--threads", "TAL_NUM_THREADS", "config key threads", "auto (...)"


def parse_count(text: object, where: str) -> int:
    """A thread count >= 0 (0 = auto) from a CLI / env / config value.

    Raises:
        ValueError: naming `where` and what to give instead.
    """
    if isinstance(text, bool):  # YAML `threads: yes` is not a count
        text = str(text)
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value < 0 or (isinstance(text, float) and not float(text).is_integer()):
        raise ValueError(
            f"{where} must be a whole number of CPU threads >= 0 ({AUTO_HELP}), got {text!r}"
        )
    return value


def cli_count(text: str) -> int:
    """argparse type of `--threads`: one `error:` line (exit 2) for a bad value."""
    try:
        return parse_count(text, "--threads")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroups(root: Path) -> list[tuple[str, str]]:
    """(controllers, path) of each line of /proc/self/cgroup; [("", "/")] when unreadable."""
    text = _read(root / "proc/self/cgroup")
    if not text:
        return [("", "/")]
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            entries.append((parts[1], parts[2] or "/"))
    return entries or [("", "/")]


def _with_ancestors(base: Path, rel: str) -> list[Path]:
    """base/rel and each of its parents up to base (a quota anywhere above limits us too)."""
    parts = [p for p in rel.split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _quota_v2(folder: Path) -> Optional[float]:
    text = _read(folder / "cpu.max")  # "max 100000" or "<quota> <period>" in microseconds
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(folder: Path) -> Optional[float]:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # quota -1 = unlimited


def cgroup_cpu_limit(root: Path = Path("/")) -> Optional[float]:
    """The tightest cgroup CPU quota of this process in CPUs (e.g. 1.5), None when unlimited.

    Args:
        root: the file-system root to read /proc and /sys/fs/cgroup under (tests pass a fake one).
    """
    cgroup = root / "sys/fs/cgroup"
    limits = []
    for controllers, rel in _own_cgroups(root):
        if controllers == "":  # cgroup v2 (unified): /sys/fs/cgroup/<path>/cpu.max
            limits += [_quota_v2(d) for d in _with_ancestors(cgroup, rel)]
        elif "cpu" in controllers.split(","):  # v1: /sys/fs/cgroup/cpu[,cpuacct]/<path>/
            for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                limits += [_quota_v1(d) for d in _with_ancestors(cgroup / name, rel)]
    found = [x for x in limits if x is not None]
    return min(found) if found else None


def affinity_cores() -> int:
    """CPUs in this process's affinity mask (os.cpu_count() where the OS has no such call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def usable_cores(root: Path = Path("/"), affinity: Optional[int] = None) -> tuple[int, str]:
    """(cores this process may use, how that was found): affinity capped by a cgroup quota."""
    affinity = affinity_cores() if affinity is None else affinity
    quota = cgroup_cpu_limit(root)
    if quota is None or quota >= affinity:
        quota_text = "no cgroup CPU quota" if quota is None else f"cgroup quota {quota:g} CPUs"
        return affinity, f"{affinity} CPUs in the affinity mask, {quota_text}"
    count = max(1, math.floor(quota))  # 1.5 CPUs: 2 threads would be throttled
    return count, f"cgroup CPU quota {quota:g} CPUs (affinity mask {affinity} CPUs)"


def _cpu_times(root: Path, cpus: set[int]) -> Optional[tuple[int, int]]:
    """(idle, total) jiffies summed over `cpus` from /proc/stat, None when unreadable."""
    text = _read(root / "proc/stat")
    if not text:
        return None
    idle = total = 0
    for line in text.splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle += ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        total += sum(ticks)
    return (idle, total) if total else None


def idle_cores(
    root: Path = Path("/"),
    cpus: Optional[set[int]] = None,
    interval: float = LOAD_SAMPLE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Optional[float]:
    """How many of `cpus` (default: the affinity mask) were idle over `interval` seconds.

    This process sleeps meanwhile, so the busy part is other processes' load. None when
    /proc/stat cannot be read (not Linux).
    """
    if cpus is None:
        cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    first = _cpu_times(root, cpus)
    if first is None:
        return None
    sleep(interval)
    second = _cpu_times(root, cpus)
    if second is None or second[1] <= first[1]:
        return None
    return len(cpus) * (second[0] - first[0]) / (second[1] - first[1])


def _auto(
    env: Mapping[str, str], root: Path, affinity: Optional[int], cap: Optional[int]
) -> ThreadChoice:
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:  # "4" or a nested list "4,2": the outer level is what torch uses
        count = parse_count(omp.split(",")[0], "OMP_NUM_THREADS")
        if count > 0:
            return ThreadChoice(count, "auto: OMP_NUM_THREADS")
    count, how = usable_cores(root, affinity)
    if cap is not None and cap < count:  # a caller that lowered torch's count keeps it
        return ThreadChoice(cap, f"auto: kept the {cap} set before start ({how})")
    cpus = None if affinity is None else set(range(affinity))
    idle = None if count == 1 else idle_cores(root, cpus)
    if idle is not None and round(idle) < count:
        busy = count - max(1, round(idle))
        count, how = count - busy, f"{how}; {busy} kept busy by other processes"
    return ThreadChoice(count, f"auto: {how}")


def resolve_threads(
    cli: Optional[int] = None,
    config: Optional[int] = None,
    env: Optional[Mapping[str, str]] = None,
    root: Path = Path("/"),
    affinity: Optional[int] = None,
    cap: Optional[int] = None,
) -> ThreadChoice:
    """The thread count by precedence --threads > TAL_NUM_THREADS > config > auto.

    Args:
        cli: the `--threads` value (None = not given); 0 = auto.
        config: the config's `threads` (None or 0 = auto).
        env: the environment (default os.environ).
        root, affinity: for tests (a fake file-system root, a fake affinity size).
        cap: auto gives at most this many (the count torch already has in this process).
    Raises:
        ValueError: a bad TAL_NUM_THREADS / config / OMP_NUM_THREADS value, named.
    """
    env = os.environ if env is None else env
    if cli is not None and parse_count(cli, "--threads") > 0:
        return ThreadChoice(int(cli), "--threads")
    env_text = env.get(ENV_VAR, "").strip()
    if env_text and parse_count(env_text, ENV_VAR) > 0:
        return ThreadChoice(int(env_text), ENV_VAR)
    if config is not None and parse_count(config, "config key threads") > 0:
        return ThreadChoice(int(config), "config key threads")
    return _auto(env, root, affinity, cap)


def apply_threads(choice: ThreadChoice) -> None:
    """Size torch's intra-op pool (also the C++ kernels' OpenMP team) and inter-op pool."""
    import torch

    torch.set_num_threads(choice.count)
    try:
        torch.set_num_interop_threads(choice.count)
    except RuntimeError:  # the inter-op pool has started (or was sized) already
        logger.debug("inter-op threads stay %d (pool already started)",
                     torch.get_num_interop_threads())
    logger.info("CPU threads: %d (%s)", choice.count, choice.source)


def setup_threads(cli: Optional[int] = None, config: Optional[int] = None) -> ThreadChoice:
    """Resolve the thread count (see `resolve_threads`) and apply it; the entry points' call.

    Auto never raises a count already lowered in this process (torch.set_num_threads before
    main(), as the tests do); explicit settings always apply.
    """
    import torch

    # a fresh process has torch's default here (>= the usable cores); a program that lowered
    # it before running our main() in-process (the tests) keeps its count
    choice = resolve_threads(cli, config, cap=torch.get_num_threads())
    apply_threads(choice)
    return choice


def warn_thread_change(stored: int, choice: ThreadChoice) -> None:
    """On resume: a warning when the run was trained with another thread count than now.

    Float sums split across threads round differently, so the continued run then differs
    slightly from an uninterrupted one; `stored` 0 (a run from before counts were stored) is
    not checked.
    """
    if stored > 0 and choice.count != stored:
        logger.warning(
            "this run was trained with %d CPU threads and resumes with %d (%s): its numbers will "
            "differ slightly from an uninterrupted run's; give --threads %d for an exact "
            "continuation", stored, choice.count, choice.source, stored)
