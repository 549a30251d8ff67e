"""``flanforge eval`` in one process: the output contract, --compare, untuned:RUN_DIR, bad input.

Models are tiny random HF models saved with ``save_pretrained`` next to a
SentencePiece tokenizer trained here; checkpoint round trips through real
ZeRO runs (and the two-rank evaluation) are in tests/e2e/test_eval.py.
"""

import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flanforge.launcher.cli import main
from flanforge.launcher.evaluation.evaluator import Evaluator
from flanforge.model.config import ModelConfig
from flanforge.mixtures import registry
from flanforge.launcher.evaluation.suites import build_suite, validation_pairs
from flanforge.launcher.evaluation import metrics
from flanforge.model.load import build_model
from flanforge.launcher.evaluation.scoring import Scorer

from .conftest import TINY, TINY_T5, evaluate, make_run, save_hf

FLANFORGE = str(Path(sys.executable).with_name("flanforge"))

def test_outputs_follow_the_contract(hf_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate(capsys, hf_dir, "--suites", "demo", "builtin_heldout", "--out", out, "--max-examples", 3) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == str(hf_dir) and set(results["suites"]) == {"demo", "builtin_heldout"}
    demo = results["suites"]["demo"]
    assert set(demo["tasks"]) == {t.name for t in registry.get_mixture("demo").tasks()}
    for name, task in demo["tasks"].items():
        assert task["n"] == 3 and set(task["metrics"]) <= set(metrics.reported_names())
        assert all(0.0 <= v <= 100.0 for v in task["metrics"].values())
        for metric, (lo, hi) in task["ci95"].items():
            assert lo <= task["metrics"][metric] <= hi
    assert set(demo["tasks"]["demo_add"]["metrics"]) == {"exact_match", "exact_match_strict"}
    heldout = results["suites"]["builtin_heldout"]
    anagram = next(t for n, t in heldout["tasks"].items() if n.startswith("anagram_check"))
    assert set(anagram["metrics"]) == {"accuracy", "accuracy_norm"} and anagram["format"] == "zs_opt"
    # Suite means are the unweighted means over tasks.
    ems = [t["metrics"]["exact_match"] for t in demo["tasks"].values() if "exact_match" in t["metrics"]]
    assert demo["mean"]["exact_match"] == pytest.approx(sum(ems) / len(ems))
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    n_examples = sum(t["n"] for s in results["suites"].values() for t in s["tasks"].values())
    assert len(lines) == n_examples
    generated = [p for p in lines if p["task"] == "demo_add"]
    assert all({"prompt", "references", "prediction", "scores", "invalid"} <= set(p) for p in generated)
    # An untrained model's empty answers are counted, not dropped.
    assert demo["tasks"]["demo_add"]["invalid"] == sum(p["invalid"] for p in generated)
    report = (out / "report.md").read_text()
    assert "### Per cluster" in report and "demo_numbers" in report and "demo_add" in report
    assert list(out.glob("*.png"))


def test_compare_reports_deltas(hf_dir, tmp_path, capsys):
    base = tmp_path / "base"
    assert evaluate(capsys, hf_dir, "--suites", "demo", "--out", base, "--max-examples", 2) == 0
    out = tmp_path / "tuned"
    assert evaluate(capsys, hf_dir, "--suites", "demo", "--out", out, "--max-examples", 2, "--compare", base) == 0
    report = (out / "report.md").read_text()
    assert "| base | Δ" in report and "+0.0" in report and str(hf_dir) in report


def test_untuned_is_the_runs_seeded_init(run_dir, hf_dir, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert evaluate(capsys, f"untuned:{run_dir}", "--suites", "demo", "--out", a, "--max-examples", 2) == 0
    assert evaluate(capsys, hf_dir, "--suites", "demo", "--out", b, "--max-examples", 2) == 0
    pa = (a / "predictions.jsonl").read_text()
    assert pa == (b / "predictions.jsonl").read_text()
    assert "loglikelihoods" in pa


@pytest.mark.parametrize("trained_with", ["flex", "segments"])
def test_a_run_trained_with_a_maskless_attention_is_scored_as_with_dense_masks(tokenizer_dir, trained_with, tmp_path,
                                                                                capsys):
    """flex and segments take no dense mask; evaluation switches the model to auto's evaluation choice, so
    the scores are those of the same weights under sdpa_mask (flex's forward runs on CPU)."""
    outs = {}
    for name in (trained_with, "sdpa_mask"):
        run = make_run(tmp_path / name, tokenizer_dir, ModelConfig(vocab_size=500, attention=name, hf_config=dict(TINY)))
        assert evaluate(capsys, f"untuned:{run}", "--suites", "demo", "--out", tmp_path / f"{name}-out",
                        "--max-examples", 2) == 0
        outs[name] = (tmp_path / f"{name}-out" / "predictions.jsonl").read_text()
    assert outs[trained_with] == outs["sdpa_mask"] and "loglikelihoods" in outs["sdpa_mask"]


def test_t5_untuned_is_the_runs_seeded_init(tokenizer_dir, tmp_path, capsys):
    run = make_run(tmp_path / "run", tokenizer_dir, ModelConfig(arch="t5", vocab_size=500, hf_config=dict(TINY_T5)))
    hf = save_hf(run, tmp_path / "hf")
    a, b = tmp_path / "a", tmp_path / "b"
    assert evaluate(capsys, f"untuned:{run}", "--suites", "demo", "--out", a, "--max-examples", 2) == 0
    assert evaluate(capsys, hf, "--suites", "demo", "--out", b, "--max-examples", 2) == 0
    assert (a / "predictions.jsonl").read_text() == (b / "predictions.jsonl").read_text()
    results = json.loads((a / "results.json").read_text())
    assert set(results["suites"]["demo"]["tasks"]["demo_sentiment"]["metrics"]) == {"accuracy", "accuracy_norm"}


def error_of(capsys, *argv) -> str:
    assert main(["eval", *map(str, argv)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input(run_dir, hf_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    err = error_of(capsys, hf_dir, "--suites", "dmeo", "--out", out)
    assert "unknown suite 'dmeo'" in err and "demo" in err
    err = error_of(capsys, f"{run_dir}:step_00000300", "--suites", "demo", "--out", out)
    assert "no checkpoint 'step_00000300'" in err and "available (closest first): none" in err
    (run_dir / "checkpoints" / "step_00000200").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_00000200" / "trainer.json").write_text("{}")
    try:
        err = error_of(capsys, f"{run_dir}:step_00000300", "--suites", "demo", "--out", out)
        assert "no checkpoint 'step_00000300'" in err and "step_00000200" in err
    finally:
        shutil.rmtree(run_dir / "checkpoints")
    assert "no such run or model directory" in error_of(capsys, tmp_path / "nope", "--suites", "demo", "--out", out)
    assert "--max-examples must be at least 1" in error_of(capsys, hf_dir, "--suites", "demo", "--out", out,
                                                           "--max-examples", 0)
    assert "no results.json" in error_of(capsys, hf_dir, "--suites", "demo", "--out", out, "--compare", tmp_path)


def test_periodic_eval_config_is_checked():
    from flanforge.errors import ConfigError
    from flanforge.launcher.config import load_config

    cfg = load_config(None, ["eval.every_steps=5", "eval.suites=[demo, builtin_heldout]"])
    assert cfg.eval.suites == ["demo", "builtin_heldout"] and cfg.eval.max_examples_per_task == 20
    assert load_config(None, ["eval.every_steps=5", "deepspeed.zero_stage=3"]).eval.every_steps == 5
    with pytest.raises(ConfigError, match="unknown config key 'eval.every_step'; did you mean 'eval.every_steps'"):
        load_config(None, ["eval.every_step=5"])


@dataclasses.dataclass
class RecordingScorer(Scorer):
    """The real scorer, noting the kind of each model call (and a generation's token budget: its task)."""

    calls: list = dataclasses.field(default_factory=list)

    def loglikelihoods(self, requests, **kwargs):
        self.calls.append("loglikelihoods")
        return super().loglikelihoods(requests, **kwargs)

    def generate(self, prompts, max_new_tokens, *args, **kwargs):
        self.calls.append(f"generate {max_new_tokens}")
        return super().generate(prompts, max_new_tokens, *args, **kwargs)


def untuned(run_dir):
    from flanforge.launcher.export.run import load_run
    from flanforge.launcher.training.rundir import RunDir

    cfg, tokenizer = load_run(RunDir(run_dir))
    return build_model(cfg.model, tokenizer, cfg.seed, training=False).eval(), tokenizer


def evaluate_as_rank(model, tokenizer, rank, world, lockstep, others=()):
    """``(results, losses, calls)`` of one rank; ``others``: the other ranks' gathered objects, in call order."""
    suites = [build_suite("demo", max_examples=5, count_tokens=lambda t: len(tokenizer.encode(t)))]
    pairs = validation_pairs(registry.get_mixture("demo"), 3)  # 18 pairs: 9 batches of 2
    sent, parts = [], iter(others)
    scorer = RecordingScorer(model, "decoder", tokenizer.pad_id, tokenizer.eos_id)
    evaluator = Evaluator(scorer, tokenizer, batch_size=2, rank=rank, world_size=world, lockstep=lockstep,
                          gather=lambda obj: sent.append(obj) or [obj, *next(parts, [])])
    results, losses = evaluator.run(suites), evaluator.losses(pairs)
    return results, losses, scorer.calls, sent


def test_a_runs_eval_settings_apply_unless_the_command_line_sets_them(tokenizer_dir, tmp_path, capsys, monkeypatch):
    from flanforge.launcher.config import EvalConfig

    run = make_run(tmp_path / "run", tokenizer_dir, ModelConfig(vocab_size=500, hf_config=dict(TINY)),
                   eval=EvalConfig(convention="t5x", batch_size=3))
    sizes = []
    init = Evaluator.__init__
    monkeypatch.setattr(Evaluator, "__init__", lambda self, *a, **kw: sizes.append(kw["batch_size"]) or init(self, *a, **kw))
    used = {}
    for name, extra in (("run", []), ("flags", ["--convention", "lm-eval", "--batch-size", "5"])):
        out = tmp_path / name
        assert evaluate(capsys, f"untuned:{run}", "--suites", "demo", "--max-examples", 2, "--out", out, *extra) == 0
        used[name] = json.loads((out / "results.json").read_text())["convention"]
    assert used == {"run": "t5x", "flags": "lm-eval"} and sizes == [3, 5]  # a decoder's default would be lm-eval, 16


def test_lockstep_ranks_make_the_same_calls_and_equal_one_rank(run_dir):
    """ZeRO-3's contract: every rank makes the same number of model calls, of the same kind and task, at once."""
    model, tokenizer = untuned(run_dir)
    alone, alone_losses, _, _ = evaluate_as_rank(model, tokenizer, 0, 1, lockstep=False)
    calls = {}
    for lockstep in (True, False):
        _, _, calls[1], sent = evaluate_as_rank(model, tokenizer, 1, 2, lockstep)
        results, losses, calls[0], _ = evaluate_as_rank(model, tokenizer, 0, 2, lockstep, [[s] for s in sent])
        if lockstep:  # 5 examples in batches of 2: 3 batches a task, one rank repeats one and discards it
            assert calls[0] == calls[1] and len(calls[0]) == 6 * 2 + 5  # 6 tasks, 9 loss batches
            assert [(t.metrics, t.predictions) for s in results for t in s.tasks] == \
                [(t.metrics, t.predictions) for s in alone for t in s.tasks]
            assert losses == pytest.approx(alone_losses, rel=1e-6)
        else:
            assert len(calls[0]) != len(calls[1])  # what would hang ZeRO-3


def test_empty_generations_are_scored_wrong_and_counted(run_dir):
    model, tokenizer = untuned(run_dir)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # every logit 0: greedy writes the pad id, which decodes to ""
    scorer = Scorer(model, "decoder", tokenizer.pad_id, tokenizer.eos_id)
    [result] = Evaluator(scorer, tokenizer).run([build_suite("demo", max_examples=4)])
    generated = [task for task in result.tasks if task.task.metric == "exact_match"]
    assert len(generated) == 5  # all demo tasks but sentiment
    for task in generated:
        assert task.invalid == len(task.predictions) == 4 and task.metrics["exact_match"] == 0.0
        assert all(p["generation"] == "" and p["prediction"] is None for p in task.predictions)


def test_outputs_are_published_together_or_not_at_all(hf_dir, tmp_path, capsys):
    """``flanforge eval`` processes stopped by a real SIGINT with the predictions written and the report
    not yet (FLANFORGE_SIGNAL_MID_WRITE), then by a real RLIMIT_FSIZE below a plot's size: one line each
    (130, 2), the previous outputs whole and nothing else in the directory; a re-run writes them again
    byte for byte."""
    out = tmp_path / "eval"
    args = [hf_dir, "--suites", "demo", "--out", out, "--max-examples", 2]
    assert evaluate(capsys, *args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = 4096  # below the plot's size, above everything eval writes before its outputs
    assert max(map(len, before.values())) > limit

    def stopped(status, **popen):
        proc = subprocess.run([FLANFORGE, "eval", *map(str, args)], capture_output=True, text=True, timeout=300,
                              **popen)
        assert proc.returncode == status and "Traceback" not in proc.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        (line,) = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("Loading weights")]
        return line

    # SIGINT as an interactive shell leaves it: a test run started in the background inherits it ignored
    assert stopped(130, env={**os.environ, "FLANFORGE_SIGNAL_MID_WRITE": "INT"},
                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) == (
        "flanforge eval: interrupted (SIGINT); nothing partial left, re-run to continue")
    line = stopped(2, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert line.startswith(f"flanforge eval: error: {out}/") and "file size limit exceeded" in line
    shutil.rmtree(out)
    assert evaluate(capsys, *args) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
