"""CPU threads for a command: how many (the cores this process may really use) and how idle ones wait.

OpenMP reads OMP_WAIT_POLICY once, when torch loads it, so `plan_threads` runs at the top of a command,
before torch is imported. Measured on this project's 2-core machine (README "Speed"), `small` network at
batch 8, torch fp32 with 2 threads: with one other busy process, spinning (ACTIVE, libgomp's default) took
3.6x as long per frame as sleeping (PASSIVE); with two, 3.3x. On a quiet machine spinning was 1.5x faster
(an earlier measurement). So idle threads sleep only when the machine is busy. A value the user set in the
environment is kept.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for torch (and OpenVINO) and the note that says why, when it is worth saying."""

    threads: int
    cores: int  # CPUs this process may use (affinity, cgroup quota)
    load: float  # the 1-minute load average when the command started
    wait_policy: str | None  # what OMP_WAIT_POLICY is for this process (None: OpenMP's default)
    note: str | None = None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup quota allows (cgroup v2 cpu.max, else v1 cfs), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cores(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on (its affinity mask), capped by the cgroup's CPU quota rounded up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return max(1, cores)


def machine_busy(threads: int, cores: int, load: float) -> bool:
    """True when other work already fills a core our threads need (the load average leaves fewer free)."""
    return load > cores - threads + 0.5


def plan_threads(
    requested: int | None,
    environ: dict[str, str] | os._Environ[str] = os.environ,
    cores: int | None = None,
    load: float | None = None,
) -> ThreadPlan:
    """Threads: --threads, else OMP_NUM_THREADS, else the available cores; PASSIVE waits on a busy machine.

    Sets OMP_WAIT_POLICY in `environ` (when the user has not) so the OpenMP that torch loads next sees it.
    """
    cores = available_cores() if cores is None else cores
    load = os.getloadavg()[0] if load is None else load
    threads = requested or _env_threads(environ) or cores
    user_policy = environ.get(WAIT_POLICY_ENV)
    if user_policy:
        return ThreadPlan(threads, cores, load, user_policy)
    if threads > 1 and machine_busy(threads, cores, load):
        environ[WAIT_POLICY_ENV] = "PASSIVE"
        note = (
            f"the machine is busy (load {load:.1f} on {cores} cores): {threads} threads that sleep when "
            f"idle ({WAIT_POLICY_ENV}=PASSIVE); --threads sets how many"
        )
        return ThreadPlan(threads, cores, load, "PASSIVE", note)
    return ThreadPlan(threads, cores, load, None)


def _env_threads(environ: dict[str, str] | os._Environ[str]) -> int | None:
    """OMP_NUM_THREADS when it is a positive integer, else None."""
    value = environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_threads(requested: int | None) -> ThreadPlan:
    """Plan the threads and the allocator, then import torch and give it that many (before torch loads)."""
    from facenhance_cli.allocator import reuse_freed_memory

    plan = plan_threads(requested)
    reuse_freed_memory()
    import torch

    torch.set_num_threads(plan.threads)
    return plan
