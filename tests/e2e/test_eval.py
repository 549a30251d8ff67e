"""``flanforge eval`` on a real ZeRO checkpoint: equal to its export, and two ranks equal one.

How the processes start: one tiny ``flanforge train`` run (the ``run_train``
fixture: DeepSpeed's launcher, 2 CPU ranks, ZeRO-2); the one-rank
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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_train):
    run = tmp_path_factory.mktemp("eval_run") / "run"
    proc = run_train(run, "train.max_steps=4", "checkpoint.every_steps=4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


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


def test_two_ranks_equal_one(run_dir, one_rank, tmp_path, run_probe):
    from flanforge.launcher import cli

    out = tmp_path / "eval2"
    run_probe(cli.__file__, 2, "eval", run_dir, "--out", out, *EVAL_ARGS)  # asserts exit status 0
    suites, predictions = outputs(out)
    assert suites == outputs(one_rank)[0]
    assert predictions == outputs(one_rank)[1]
    n = sum(t["n"] for s in suites.values() for t in s["tasks"].values())
    assert len(predictions.splitlines()) == n
