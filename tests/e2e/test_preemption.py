"""Signals and kills: SIGUSR1 checkpoints and stops cleanly; a SIGKILLed run, restarted,
reproduces the uninterrupted run's per-step losses exactly (fp32 on CPU)."""

import os
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
STEPS = 12


def wait_for(predicate, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def logged_steps(out):
    log = Path(f"{out}.log")
    return log.read_text().count("[flanforge] step ") if log.exists() else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run_train, read_scalars):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_scalars(out, "train/loss")


def test_sigusr1_checkpoints_and_exits_cleanly(tmp_path, start_train, run_train, read_scalars, reference):
    out = tmp_path / "run"
    proc = start_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=100")
    assert wait_for(lambda: logged_steps(out) >= 3)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=300) == 0
    stopped_at = int((out / "PREEMPTED").read_text())
    assert 3 <= stopped_at < STEPS
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step_{stopped_at:08d}"
    again = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=100")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from step {stopped_at}" in again.stdout
    assert not (out / "PREEMPTED").exists()
    assert read_scalars(out, "train/loss") == reference


def test_sigkill_then_restart_reproduces_losses_exactly(tmp_path, start_train, run_train, read_scalars, reference):
    out = tmp_path / "run"
    proc = start_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=4")
    # Kill everything (launcher and ranks) somewhere after the first checkpoint.
    assert wait_for(lambda: logged_steps(out) >= 6)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "latest").read_text().strip() in ("step_00000004", "step_00000008")
    again = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=4")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert read_scalars(out, "train/loss") == reference


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, run_train, read_scalars, reference, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("FLANFORGE_KILL_IN_SAVE", "8")  # rank processes SIGKILL themselves mid-save at step 8
    killed = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=4")
    assert killed.returncode != 0
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert not (out / "checkpoints" / "step_00000008" / "trainer.json").exists()
    monkeypatch.delenv("FLANFORGE_KILL_IN_SAVE")
    again = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=4")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed from step 4" in again.stdout
    assert read_scalars(out, "train/loss") == reference
