"""Bad input around real ranks.

- A rank that fails with a user error (``FLANFORGE_INJECT_ERROR=1`` makes rank 1 raise one once
  the two ranks are connected, after pre-flight has passed): ``flanforge train`` starts DeepSpeed's
  launcher, which starts 2 CPU ranks. The user sees that rank's one line first and last, the
  other rank exits without a traceback, and the exit status is 2.
- Keys that may change on resume take effect from the first resumed step:
  ``resume_probe.py`` on 1 CPU rank under DeepSpeed's launcher (one launch for every key).
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
PROBE = str(Path(__file__).with_name("resume_probe.py"))


def test_failing_rank_reports_one_line_first_and_last(tmp_path, run_train, monkeypatch):
    monkeypatch.setenv("FLANFORGE_INJECT_ERROR", "1")
    proc = run_train(tmp_path / "run", "train.max_steps=2")
    expected = "flanforge train: error: injected error on rank 1 (FLANFORGE_INJECT_ERROR)"
    output = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "flanforge train: " in line]
    assert proc.returncode == 2, output[-3000:]
    assert errors == [expected, expected], output[-3000:]  # the rank's line, then the launcher's, last
    assert proc.stderr.rstrip().splitlines()[-1] == expected
    assert "Traceback" not in output, output[-3000:]


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
