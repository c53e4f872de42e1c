"""Studio children run below the server: niced, and under SCHED_IDLE where Linux has it."""

from __future__ import annotations

import os
import subprocess

import pytest

from stream_server.studio.runner import child_env, lower_priority


def test_a_child_gets_a_lower_priority_and_the_idle_policy() -> None:
    if not hasattr(os, "SCHED_IDLE"):
        print("SKIP reason: this platform has no SCHED_IDLE")
        pytest.skip("no SCHED_IDLE here")
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        lower_priority(child.pid, 10, idle=True)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE
    finally:
        child.kill()
        child.wait()


def test_children_use_one_thread_per_numeric_library_and_the_servers_code() -> None:
    env = child_env()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    import swapstream

    assert env["PYTHONPATH"].split(os.pathsep)[0] == os.path.dirname(os.path.dirname(swapstream.__file__))
