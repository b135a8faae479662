"""CPU threads: the cores a process may use (affinity, cgroup quota), the wait policy, `--threads`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.threads import WAIT_POLICY_ENV, available_cores, cgroup_cpu_limit, plan_threads


@pytest.mark.parametrize(
    "files, limit",
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({}, None),
    ],
    ids=["v2-unlimited", "v2-quota", "v1-unlimited", "v1-quota", "none"],
)
def test_cgroup_quota_v1_and_v2(tmp_path, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_available_cores_is_the_affinity_capped_by_the_quota_rounded_up(tmp_path):
    import os

    affinity = len(os.sched_getaffinity(0))
    assert available_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cores(tmp_path) == 1  # half a CPU's time still runs one thread
    (tmp_path / "cpu.max").write_text(f"{100000 * affinity + 1} 100000\n")
    assert available_cores(tmp_path) == affinity  # a quota above the affinity does not add cores


def test_threads_come_from_the_flag_then_omp_num_threads_then_the_cores():
    assert plan_threads(3, {"OMP_NUM_THREADS": "2"}, cores=8, load=0.0).threads == 3
    assert plan_threads(None, {"OMP_NUM_THREADS": "2"}, cores=8, load=0.0).threads == 2
    assert plan_threads(None, {"OMP_NUM_THREADS": "x"}, cores=8, load=0.0).threads == 8
    assert plan_threads(None, {}, cores=8, load=0.0).threads == 8


def test_idle_threads_sleep_only_on_a_busy_machine():
    quiet: dict[str, str] = {}
    plan = plan_threads(None, quiet, cores=2, load=0.2)
    assert plan.wait_policy is None and WAIT_POLICY_ENV not in quiet and plan.note is None
    busy: dict[str, str] = {}
    plan = plan_threads(None, busy, cores=2, load=1.0)  # another process holds one of the two cores
    assert plan.wait_policy == "PASSIVE" and busy[WAIT_POLICY_ENV] == "PASSIVE"
    assert plan.note and "busy" in plan.note
    assert plan_threads(1, {}, cores=2, load=1.0).wait_policy is None  # one thread never waits for others
    assert plan_threads(4, {}, cores=16, load=1.0).wait_policy is None  # plenty of free cores


def test_the_users_wait_policy_is_kept():
    environ = {WAIT_POLICY_ENV: "ACTIVE"}
    plan = plan_threads(None, environ, cores=2, load=2.0)
    assert plan.wait_policy == "ACTIVE" and environ[WAIT_POLICY_ENV] == "ACTIVE"


@pytest.mark.parametrize("command", ["enhance", "train", "eval"])
def test_threads_flag_is_documented_and_checked(command):
    runner = CliRunner()
    assert "--threads" in runner.invoke(app, [command, "--help"]).output
    result = runner.invoke(app, [command, "x", "--threads", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
