"""The NaN/Inf guard, with non-finite losses injected through FLANFORGE_INJECT_NONFINITE."""

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("stage", [2, 3])
def test_nonfinite_steps_are_skipped_and_counted(tmp_path, run_train, read_scalars, monkeypatch, stage):
    monkeypatch.setenv("FLANFORGE_INJECT_NONFINITE", "4,5")
    out = tmp_path / "run"
    proc = run_train(out, "train.max_steps=8", "checkpoint.every_steps=0", "train.max_nonfinite_in_a_row=3",
                     f"deepspeed.zero_stage={stage}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "step 4: non-finite loss, update skipped (1 in a row)" in proc.stdout
    skipped = dict(read_scalars(out, "train/nonfinite_skipped"))
    assert skipped[3] == 0 and skipped[4] == 1 and skipped[8] == 2
    # A skipped step does not advance the LR schedule either.
    lrs = dict(read_scalars(out, "train/lr"))
    assert lrs[5] == lrs[4] == lrs[6]
    # Skipped steps leave the weights alone: the next finite loss continues the trend.
    losses = dict(read_scalars(out, "train/loss"))
    assert all(losses[s] == losses[s] for s in (1, 2, 3, 6, 7, 8))  # finite (not NaN)
    assert losses[8] < losses[1]


def test_too_many_in_a_row_stops_and_keeps_last_good_checkpoint(tmp_path, run_train, monkeypatch):
    monkeypatch.setenv("FLANFORGE_INJECT_NONFINITE", "5,6,7")
    out = tmp_path / "run"
    proc = run_train(out, "train.max_steps=10", "checkpoint.every_steps=2", "train.max_nonfinite_in_a_row=3")
    assert proc.returncode != 0
    assert "3 steps in a row with a non-finite loss" in proc.stdout + proc.stderr
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert (out / "checkpoints" / "step_00000004" / "trainer.json").is_file()
