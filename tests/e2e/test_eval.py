"""``flanforge eval`` on a real ZeRO checkpoint: equal to its export, two ranks equal one; evaluation
during training leaves the training losses bit-identical (fp32) and logs its scalars, under ZeRO-3 too
(where it equals the evaluation of the same step's checkpoint).

How the processes start: two tiny ``flanforge train`` runs (the ``run_train``
fixture: DeepSpeed's launcher, 2 CPU ranks, ZeRO-2, fp32), one with
``eval.every_steps=2`` and one without; the one-rank
evaluations and the export run in this process through the CLI; the two-rank
evaluation is one more DeepSpeed launch (``run_probe``: ``deepspeed.launcher.runner``,
2 CPU ranks, gloo) of ``launcher/cli.py eval``.
"""

import json

import pytest

from flanforge.launcher.cli import main

pytestmark = pytest.mark.e2e

# Generation (demo) and rank classification (anagram_check in builtin_heldout), several batches per task.
EVAL_ARGS = ["--suites", "demo", "builtin_heldout", "--max-examples", "3", "--batch-size", "2"]


STEPS = ["train.max_steps=4", "checkpoint.every_steps=4", "train.precision=fp32"]
PERIODIC = ["eval.every_steps=2", "eval.max_examples_per_task=2", "eval.suites=[demo, builtin_heldout]"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process evaluations use one torch thread, as each launched rank does: the comparisons are
    exact, and CPU matmuls split over another number of threads may round differently."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_train):
    """A run that evaluated itself at steps 2 and 4."""
    run = tmp_path_factory.mktemp("eval_run") / "run"
    proc = run_train(run, *STEPS, *PERIODIC)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def test_periodic_eval_leaves_training_losses_bit_identical(run_dir, tmp_path, run_train, read_scalars):
    plain = tmp_path / "plain"
    proc = run_train(plain, *STEPS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with_eval = read_scalars(run_dir, "train/loss")
    assert [s for s, _ in with_eval] == [1, 2, 3, 4]
    assert with_eval == read_scalars(plain, "train/loss")  # exact floats, steps 3 and 4 after an evaluation
    for tag in ("eval/demo/mean", "eval/demo/demo_add/exact_match", "eval/builtin_heldout/mean/accuracy",
                "val/loss", "val/loss/demo_words", "val/loss/demo_numbers"):
        assert [s for s, _ in read_scalars(run_dir, tag)] == [2, 4], tag
    loss = dict(read_scalars(run_dir, "val/loss"))
    assert 0 < loss[4] < loss[2]  # it learns something in 4 steps of lr 2e-3
    history = [json.loads(line) for line in (run_dir / "eval" / "history.jsonl").read_text().splitlines()]
    assert [e["step"] for e in history] == [2, 4]
    assert set(history[0]["suites"]) == {"demo", "builtin_heldout"}
    assert history[0]["suites"]["demo"]["tasks"]["demo_add"]["n"] == 2


@pytest.fixture(scope="module")
def one_rank(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_one")
    assert main(["eval", str(run_dir), "--out", str(out), *EVAL_ARGS]) == 0
    return out


def outputs(out):
    results = json.loads((out / "results.json").read_text())
    return results["suites"], (out / "predictions.jsonl").read_text()


def test_checkpoint_equals_export(run_dir, one_rank, tmp_path):
    export = tmp_path / "export"
    assert main(["export", str(run_dir), "--out", str(export)]) == 0
    out = tmp_path / "eval"
    assert main(["eval", str(export), "--out", str(out), *EVAL_ARGS]) == 0
    suites, predictions = outputs(out)
    assert (suites, predictions) == outputs(one_rank)
    assert '"loglikelihoods"' in predictions and '"generation"' in predictions
    assert (one_rank / "training_curve.png").is_file()  # the run's periodic evaluations, plotted
    assert not (out / "training_curve.png").exists()  # an export has no history


def test_two_ranks_equal_one(run_dir, one_rank, tmp_path, run_probe):
    from flanforge.launcher import cli

    out = tmp_path / "eval2"
    run_probe(cli.__file__, 2, "eval", run_dir, "--out", out, *EVAL_ARGS)  # asserts exit status 0
    suites, predictions = outputs(out)
    assert suites == outputs(one_rank)[0]
    assert predictions == outputs(one_rank)[1]
    n = sum(t["n"] for s in suites.values() for t in s["tasks"].values())
    assert len(predictions.splitlines()) == n


ZERO3 = ["deepspeed.zero_stage=3", "train.max_steps=3", "checkpoint.every_steps=2", "train.precision=fp32"]


def test_zero3_periodic_eval_is_the_checkpoints_and_leaves_training_alone(tmp_path, train_cmd, run_commands,
                                                                          read_scalars):
    """ZeRO-3 ranks hold shards and every forward gathers the weights with all ranks: periodic eval runs
    in lockstep (3 examples in batches of 2: ranks get unequal work, generations end at different steps)."""
    from flanforge.launcher.evaluation.run import load_model
    from flanforge.launcher.evaluation.evaluator import Evaluator
    from flanforge.mixtures import registry
    from flanforge.launcher.evaluation.suites import validation_pairs
    from flanforge.launcher.evaluation.scoring import Scorer, max_length

    runs = {"eval": tmp_path / "eval", "plain": tmp_path / "plain"}
    periodic = ["eval.every_steps=2", "eval.max_examples_per_task=3", "eval.batch_size=2", "eval.suites=[demo]"]
    # Side by side: on 2 cores one run's start-up (imports, DeepSpeed set-up) overlaps the other's.
    for proc in run_commands([train_cmd(runs["eval"], *ZERO3, *periodic), train_cmd(runs["plain"], *ZERO3)]):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_scalars(runs["eval"], "train/loss") == read_scalars(runs["plain"], "train/loss")  # step 3 included
    [entry] = [json.loads(line) for line in (runs["eval"] / "eval" / "history.jsonl").read_text().splitlines()]
    model_spec = f"{runs['eval']}:2"
    out = tmp_path / "out"
    assert main(["eval", model_spec, "--out", str(out), "--suites", "demo", "--max-examples", "3",
                 "--batch-size", "2"]) == 0
    assert entry["step"] == 2 and entry["suites"] == outputs(out)[0]
    # The validation loss, a continuous number, from the consolidated checkpoint in this process.
    tokenizer, arch, build = load_model(model_spec)[:3]
    model = build()
    evaluator = Evaluator(Scorer(model, arch, tokenizer.pad_id, tokenizer.eos_id), tokenizer, batch_size=2,
                          max_length=max_length(model, arch))
    pairs = validation_pairs(registry.get_mixture("demo"), 3, lambda text: len(tokenizer.encode(text)))
    assert entry["val_loss"] == pytest.approx(evaluator.losses(pairs), rel=1e-5)
