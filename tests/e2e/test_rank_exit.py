"""Every rank process ends through one exit path (``launcher/ranks/rank_exit.py``) and never aborts after its
work is done. Two-rank launches under DeepSpeed's own launcher: ``exit_probe.py`` (a ZeRO-2 engine that
stepped, a forked DataLoader worker, gloo collectives), ``flanforge train`` and ``flanforge eval``.

The stress test (``make test-stress``; not in the default tier) makes 30 launches back to back while a
busy loop runs on every core, and counts the launches that did not exit 0 or whose ranks aborted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, run_group, train_command

pytestmark = pytest.mark.e2e
PROBE = Path(__file__).with_name("exit_probe.py")
ABORT = "terminate called"


def probe_command(mode: str = "exit-path") -> list[str]:
    from flanforge.launcher.ranks.process_group import free_port

    return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port",
            str(free_port()), "--no_local_rank", str(PROBE), mode]


def rank_env() -> dict[str, str]:
    from flanforge.launcher.config import load_config
    from flanforge.launcher.ranks.launch import rank_env

    return rank_env(load_config(None, []))  # what `flanforge train` gives its ranks


def outcome(proc: subprocess.CompletedProcess) -> str | None:
    """None for a clean launch, else what went wrong."""
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or ABORT in text:
        return f"exit {proc.returncode}, {text.count(ABORT)} aborts: {text[-1500:]}"
    return None


def test_a_two_rank_probe_ends_cleanly_through_the_exit_path():
    proc = run_group(probe_command(), timeout=300, env=rank_env())
    assert outcome(proc) is None
    assert "rank 0: done" in proc.stdout and "rank 1: done" in proc.stdout


def test_a_rank_that_fails_after_connecting_fails_the_launch():
    """The exit path keeps a failing rank's status: the launch fails, with no abort on top."""
    env = {**rank_env(), "FLANFORGE_EXIT_PROBE_FAIL": "1"}
    proc = run_group(probe_command(), timeout=300, env=env)
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr and ABORT not in proc.stdout + proc.stderr


@pytest.fixture
def busy_cores():
    """A busy loop on every core for the test's duration (the load CI and shared nodes see)."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    yield len(loops)
    for loop in loops:
        loop.kill()
        loop.wait()


LAUNCHES = 30


@pytest.mark.stress
def test_thirty_launches_under_load_end_without_an_abort(tmp_path, busy_cores):
    """Launch i: every tenth a tiny `flanforge train` (2 steps) and the next an `flanforge eval` of it on
    2 ranks; the rest the exit probe."""
    from flanforge.launcher.ranks.process_group import free_port

    run_dir = tmp_path / "run"
    failures, kinds = {}, []
    for i in range(LAUNCHES):
        if i % 10 == 0:
            kind, cmd = "train", train_command(tmp_path / f"run{i}", "train.max_steps=2", "checkpoint.every_steps=2")
            run_dir = tmp_path / f"run{i}"
        elif i % 10 == 1:
            kind = "eval"
            cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port",
                   str(free_port()), "--no_local_rank", str(ROOT / "launcher" / "cli.py"), "eval", str(run_dir),
                   "--suites", "builtin_heldout", "--max-examples", "2", "--out", str(tmp_path / f"eval{i}")]
        else:
            kind, cmd = "probe", probe_command()
        proc = run_group(cmd, timeout=600, env=rank_env())
        kinds.append(kind)
        if (problem := outcome(proc)) is not None:
            failures[f"launch {i} ({kind})"] = problem
    assert kinds.count("train") == 3 and kinds.count("eval") == 3 and busy_cores >= 2
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())
