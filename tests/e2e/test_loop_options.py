"""Loop options on 2 CPU ranks: ZeRO stages with offload, bf16, gradient checkpointing, LR schedules."""

import pytest

pytestmark = pytest.mark.e2e
STEPS = 12


@pytest.mark.parametrize(
    "overrides",
    [
        ("deepspeed.zero_stage=1", "deepspeed.offload_optimizer=true", "train.precision=bf16",
         "model.gradient_checkpointing=true", "train.schedule=linear"),
        ("deepspeed.zero_stage=3", "deepspeed.offload_param=true", "deepspeed.offload_optimizer=true",
         "train.schedule=cosine", "train.grad_accum=2"),
    ],
    ids=["zero1-offload-bf16-ckpt-linear", "zero3-offload-cosine-accum"],
)
def test_options_train(tmp_path, run_train, read_scalars, overrides):
    out = tmp_path / "run"
    proc = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=0", "train.warmup_steps=2",
                     "train.lr=0.003", *overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    losses = [v for _, v in read_scalars(out, "train/loss")]
    assert len(losses) == STEPS
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    lrs = [v for _, v in read_scalars(out, "train/lr")]
    # Warmup to the peak, then the schedule decays towards 0 at max_steps.
    assert lrs[0] < lrs[1] == pytest.approx(0.003)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.3 * 0.003
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step_{STEPS:08d}"
