"""scripts/gpu_check.py's step runner: a step past its time limit is killed with every
process under it (ninja starts each compiler in a process group of its own), recorded as
failed, and the steps after it still run."""
from __future__ import annotations

import os
import time

import psutil

from scripts.gpu_check import Steps


def test_a_step_past_its_limit_is_killed_with_its_whole_tree(tmp_path):
    steps = Steps(tmp_path, budget=60, env=dict(os.environ))
    marker = tmp_path / "grandchild.pid"
    # The grandchild leaves the step's process group, as ninja's compilers do.
    script = f"setsid sleep 120 & echo $! > {marker}; wait"
    started = time.monotonic()
    assert not steps.run("slow", ["bash", "-c", script], limit=1.5)
    assert time.monotonic() - started < 20
    grandchild = int(marker.read_text())
    deadline = time.monotonic() + 5
    try:
        while psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the grandchild outlived its step"
            time.sleep(0.05)  # polling a process that is not ours to wait for
    finally:
        if psutil.pid_exists(grandchild):
            psutil.Process(grandchild).kill()
    assert steps.run("next", ["true"], limit=10)
    assert [(r.step, r.status) for r in steps.results] == [("slow", "failed"), ("next", "ok")]
    assert "timed out after" in steps.results[0].details
    assert "slow" in steps.table() and "failed" in steps.table()
