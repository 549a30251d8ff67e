"""End-to-end runs: each test starts ``flanforge train``, which starts DeepSpeed's own
launcher (``deepspeed.launcher.runner``), which starts 2 CPU ranks (gloo)."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FLANFORGE = str(Path(sys.executable).with_name("flanforge"))
DEMO = str(ROOT / "configs" / "demo.yaml")

# Small enough for CI, big enough that the loss clearly falls.
TINY = [
    "model.hf_config.hidden_size=128",
    "model.hf_config.intermediate_size=256",
    "model.hf_config.num_hidden_layers=2",
    "model.vocab_size=500",
    "train.warmup_steps=5",
    "train.log_every=1",
]


def train_command(output_dir, *overrides):
    """The tiny defaults, then ``overrides``: a key given in both is given once, the test's value (flanforge
    refuses a key given twice)."""
    from flanforge.launcher.ranks.process_group import free_port

    port = f"launch.master_port={free_port()}"  # runs started side by side must not collide
    given = {o.split("=", 1)[0] for o in overrides}
    defaults = [o for o in (*TINY, port) if o.split("=", 1)[0] not in given]
    return [FLANFORGE, "train", "--config", DEMO, f"output_dir={output_dir}", *defaults, *overrides]


def run_groups(cmds, timeout=600, env=None):
    """Run commands side by side, each in its own process group, with their output in files (no pipe
    fills up while another is waited for); on a timeout kill every group (launchers, ranks, op builds),
    so a hung run cannot leave processes behind that hold ports, memory or build locks: a test failure."""
    with contextlib.ExitStack() as stack:
        files = [(stack.enter_context(tempfile.TemporaryFile("w+")), stack.enter_context(tempfile.TemporaryFile("w+")))
                 for _ in cmds]
        procs = [subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, start_new_session=True)
                 for cmd, (out, err) in zip(cmds, files)]
        deadline, timed_out = time.monotonic() + timeout, False
        try:
            for proc in procs:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        texts = [(out.seek(0), out.read(), err.seek(0), err.read())[1::2] for out, err in files]
    if timed_out:
        shown = "".join(f"{cmd[:4]}:\n{out[-3000:]}{err[-3000:]}" for cmd, (out, err) in zip(cmds, texts))
        raise AssertionError(f"timed out after {timeout} s\n{shown}")
    return [subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr) for cmd, proc, (stdout, stderr)
            in zip(cmds, procs, texts)]


def run_group(cmd, timeout=600, env=None):
    """One command: see :func:`run_groups`."""
    return run_groups([cmd], timeout, env)[0]


def train(output_dir, *overrides):
    """Run ``flanforge train`` on the demo config with the tiny overrides; returns the CompletedProcess."""
    return run_group(train_command(output_dir, *overrides))


def probe(script, world, *args):
    """Run a probe script on ``world`` CPU ranks under DeepSpeed's own launcher; asserts it succeeded."""
    from flanforge.launcher.config import load_config
    from flanforge.launcher.ranks.process_group import free_port
    from flanforge.launcher.ranks.launch import rank_env

    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(world),
           "--master_port", str(free_port()), "--no_local_rank", str(script), *map(str, args)]
    proc = run_group(cmd, env=rank_env(load_config(None, [])))  # what `flanforge train` gives its ranks
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def start(output_dir, *overrides):
    """Start ``flanforge train`` in the background (its own process group); output goes to output_dir.log."""
    log = open(f"{output_dir}.log", "w")
    return subprocess.Popen(train_command(output_dir, *overrides), stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def all_scalars(output_dir):
    """Every scalar tag -> its (step, value) pairs, read with tensorboard's own reader."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(Path(output_dir) / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def scalars(output_dir, tag):
    """(step, value) pairs of a scalar."""
    return all_scalars(output_dir)[tag]


@pytest.fixture(scope="session")
def run_train():
    """``run_train(output_dir, *overrides)``: see :func:`train`."""
    return train


@pytest.fixture(scope="session")
def run_commands():
    """``run_commands(cmds, timeout=600)``: see :func:`run_groups`."""
    return run_groups


@pytest.fixture(scope="session")
def train_cmd():
    """``train_cmd(output_dir, *overrides)``: the command line :func:`train` runs."""
    return train_command


@pytest.fixture(scope="session")
def run_command():
    """``run_command(cmd, timeout=600)``: see :func:`run_group`."""
    return run_group


@pytest.fixture(scope="session")
def run_probe():
    """``run_probe(script, world, *args)``: see :func:`probe`."""
    return probe


@pytest.fixture(scope="session")
def start_train():
    """``start_train(output_dir, *overrides) -> Popen``: see :func:`start`."""
    return start


@pytest.fixture(scope="session")
def read_all_scalars():
    """``read_all_scalars(output_dir)``: see :func:`all_scalars`."""
    return all_scalars


@pytest.fixture(scope="session")
def read_scalars():
    """``read_scalars(output_dir, tag)``: see :func:`scalars`."""
    return scalars
