"""The embedded default end to end: 2 CPU ranks through DeepSpeed's launcher, ZeRO-2."""

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e
STEPS = 40


SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, run_train):
    out = tmp_path_factory.mktemp("demo") / "run"
    shm_before = set(SHM.iterdir())
    proc = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=20", "train.lr=0.003")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc.shm_left = sorted(set(SHM.iterdir()) - shm_before)
    return out, proc


def test_leaves_no_shared_memory_behind(demo_run):
    # DeepSpeed's CPU shm all-reduce left 132 MB per run in /dev/shm (see dist.init_process_group).
    _, proc = demo_run
    assert proc.shm_left == []
    assert "deepspeed_shm_comm" not in proc.stdout + proc.stderr


def test_loss_falls_clearly(demo_run, read_scalars):
    out, _ = demo_run
    losses = [v for _, v in read_scalars(out, "train/loss")]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.75 * first, (first, last)


def test_one_scalar_per_step(demo_run, read_scalars):
    out, _ = demo_run
    for tag in ("train/loss", "train/lr", "train/tokens_per_sec"):
        steps = [s for s, _ in read_scalars(out, tag)]
        assert steps == list(range(1, STEPS + 1)), tag
    assert all(v > 0 for _, v in read_scalars(out, "train/tokens_per_sec"))


def test_run_directory_contract(demo_run):
    out, _ = demo_run
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["output_dir"] == str(out) and resolved["train"]["max_steps"] == STEPS
    assert (out / "tokenizer" / "spiece.model").is_file()
    ckpts = out / "checkpoints"
    tag = (ckpts / "latest").read_text().strip()
    assert tag == "step_00000040"
    for rank in (0, 1):
        assert (ckpts / tag / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").is_file()
        assert (ckpts / tag / f"rng_rank{rank}.pt").is_file()
    assert json.loads((ckpts / tag / "trainer.json").read_text())["step"] == STEPS
    # Only rank 0 writes TensorBoard events.
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_restart_on_finished_run_resumes_and_does_nothing(demo_run, run_train, read_scalars):
    out, _ = demo_run
    proc = run_train(out, f"train.max_steps={STEPS}", "checkpoint.every_steps=20", "train.lr=0.003")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resumed from step {STEPS}" in proc.stdout
    assert len(read_scalars(out, "train/loss")) == STEPS


def test_per_group_format_and_task_scalars(demo_run, read_scalars):
    from tensorboard.backend.event_processing import event_accumulator

    out, _ = demo_run
    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    groups = [t for t in tags if t.startswith("loss/group/")]
    formats = [t for t in tags if t.startswith("loss/format/")]
    tasks = [t for t in tags if t.startswith("loss/task/")]
    assert groups and formats and tasks
    assert {t.split("/")[-1] for t in formats} <= {"zero_shot", "few_shot", "cot", "inverted"}
    overall = dict(read_scalars(out, "train/loss"))
    for tag in groups + formats + tasks:
        values = dict(read_scalars(out, tag))
        # Plausible: finite, positive, and the same order of magnitude as the overall loss.
        assert all(0 < v < 3 * overall[s] + 1 for s, v in values.items()), tag
    # The overall loss is the token-weighted mean of the groups': it lies between them.
    step = STEPS
    group_values = [dict(read_scalars(out, g))[step] for g in groups if step in dict(read_scalars(out, g))]
    assert min(group_values) - 1e-4 <= overall[step] <= max(group_values) + 1e-4
    for tag in ("train/grad_norm", "train/examples_per_sec", "train/padding_efficiency",
                "train/data_wait_fraction", "data/overlong_truncated", "data/bad_records_skipped",
                "data/corrupt_records_skipped"):
        assert len(read_scalars(out, tag)) == STEPS, tag
    assert 0.5 < read_scalars(out, "train/padding_efficiency")[-1][1] <= 1.0
    assert {"config/text_summary", "examples/text_summary"} <= set(acc.Tags()["tensors"])
