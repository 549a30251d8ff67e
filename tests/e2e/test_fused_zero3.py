"""The fused loss under ZeRO-3 (LM-head weight partitioned) trains like the unfused loss."""

import pytest

pytestmark = pytest.mark.e2e


def test_zero3_fused_matches_unfused(tmp_path, run_train, read_scalars):
    losses = {}
    for fused in (True, False):
        out = tmp_path / f"fused_{fused}"
        proc = run_train(out, "deepspeed.zero_stage=3", f"model.fused_loss={str(fused).lower()}",
                         "train.max_steps=10", "checkpoint.every_steps=0")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        losses[fused] = [v for _, v in read_scalars(out, "train/loss")]
    assert len(losses[True]) == 10
    # The weights move (the losses change), and both paths follow the same trajectory.
    assert abs(losses[True][-1] - losses[True][0]) > 0.1
    for a, b in zip(losses[True], losses[False]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)
