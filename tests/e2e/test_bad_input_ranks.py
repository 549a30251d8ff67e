"""Bad input around real ranks.

- A rank that fails with a user error (``FLANFORGE_INJECT_ERROR=1`` makes rank 1 raise one once
  the ranks are connected, after pre-flight has passed), with two "nodes" on this host: two
  ``flanforge train``, each starting DeepSpeed's launcher for one CPU rank. On both nodes the user
  sees that rank's one line last (on its own node first as well), the other rank exits without a
  traceback, and the exit status is 2.
- Keys that may change on resume take effect from the first resumed step:
  ``resume_probe.py`` on 1 CPU rank under DeepSpeed's launcher (one launch for the engine's keys;
  the others: ``test_resume_keys.py``).
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
PROBE = str(Path(__file__).with_name("resume_probe.py"))


def test_resumable_engine_keys_take_effect_from_the_first_resumed_step(tmp_path, run_probe):
    out = tmp_path / "resume.json"
    run_probe(PROBE, 1, out)
    result = json.loads(out.read_text())
    r = result["zero2"]
    assert r["scheduler_steps"] == 3
    assert r["restored_lr"] == pytest.approx(0.001)  # what DeepSpeed alone restores: the old rate
    assert r["lr"] == pytest.approx(r["expected_lr"]) and r["expected_lr"] == pytest.approx(0.004 * 0.97553, rel=1e-4)
    assert r["lr_after_one_step"] == pytest.approx(r["expected_lr_after_one_step"])  # new schedule, max_steps
    assert r["weight_decay"] == [0.25, 0.0]  # decayed weights, then biases and norms
    assert r["grad_clip"] == 0.5
    assert r["micro_batch_size"] == 2  # the checkpoint's batch size does not come back
    assert r["offload_optimizer"] and r["moments_restored"]  # offloaded now, Adam's moments carried over
    z3 = result["zero3"]
    assert z3["offload_param"]
    assert z3["resumed"] == pytest.approx(z3["continued"], rel=1e-5)  # weights and optimizer states carried over


def test_failing_rank_is_reported_first_and_last_on_every_node(tmp_path, train_cmd, run_commands, monkeypatch):
    """Two nodes on this host: two ``flanforge train`` (one rank each) on one run directory and one port.
    Rank 1 (node 1) fails after pre-flight; rank 0 (node 0) then meets a closed connection, finds rank 1's
    claim in the run directory, and exits quietly: both nodes end with rank 1's line and status 2."""
    from flanforge.launcher.ranks.process_group import free_port

    monkeypatch.setenv("FLANFORGE_INJECT_ERROR", "1")
    port, out = free_port(), tmp_path / "run"
    nodes = [train_cmd(out, "train.max_steps=2", "launch.nnodes=2", f"launch.node_rank={i}",
                       "launch.nproc_per_node=1", f"launch.master_port={port}") for i in (0, 1)]
    expected = "flanforge train: error: injected error on rank 1 (FLANFORGE_INJECT_ERROR)"
    procs = run_commands(nodes)
    for node, proc in enumerate(procs):
        output = proc.stdout + proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "flanforge train: " in line]
        assert proc.returncode == 2, f"node {node}: {output[-3000:]}"
        # node 1: the rank's line, then its launcher's, last; node 0: only its launcher's
        assert errors == [expected] * (node + 1), f"node {node}: {output[-3000:]}"
        assert proc.stderr.rstrip().splitlines()[-1] == expected, f"node {node}: {output[-3000:]}"
        assert "Traceback" not in output, f"node {node}: {output[-3000:]}"


def test_a_checkpoint_past_the_file_size_limit_is_one_line_and_not_published(tmp_path, train_cmd, run_command):
    """torch.save's writer reports a full disk or ``ulimit -f`` without an errno: still one line naming the tag
    (the ranks' user error, exit 2), no traceback, and ``latest`` never names the incomplete tag."""
    out = tmp_path / "run"
    limit_kib = 1024  # the launch's logs and TensorBoard fit; the checkpoint's states (several MB) do not
    cmd = ["bash", "-c", f'ulimit -f {limit_kib} && exec "$@"', "ulimit",
           *train_cmd(out, "train.max_steps=2", "checkpoint.every_steps=2")]
    proc = run_command(cmd)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "file size limit exceeded (ulimit -f)" in lines[-1] and "step_" in lines[-1], lines[-3:]
    assert not (out / "checkpoints" / "latest").exists()
