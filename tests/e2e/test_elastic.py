"""Elastic resume: a 2-rank ZeRO run restarted on 1 rank continues through DeepSpeed's
universal checkpoint (weights, optimizer and schedule carried over)."""

import json

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_then_one(tmp_path, run_train, read_scalars, stage):
    out = tmp_path / "run"
    first = run_train(out, "train.max_steps=6", "checkpoint.every_steps=6", f"deepspeed.zero_stage={stage}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = run_train(out, "train.max_steps=10", "checkpoint.every_steps=5", "launch.nproc_per_node=1",
                       f"deepspeed.zero_stage={stage}")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "written by 2 ranks, resuming on 1" in second.stdout
    assert "resumed from step 6" in second.stdout
    losses = dict(read_scalars(out, "train/loss"))
    assert sorted(losses) == list(range(1, 11))
    # Carried-over weights: the first step on one rank is far below the untrained loss.
    assert losses[7] < losses[1] - 0.5
    lrs = dict(read_scalars(out, "train/lr"))
    assert lrs[7] != lrs[1]  # the schedule continued instead of restarting warmup
    trainer = json.loads((out / "checkpoints" / "step_00000010" / "trainer.json").read_text())
    assert trainer["world_size"] == 1 and trainer["step"] == 10
