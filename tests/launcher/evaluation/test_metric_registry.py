"""The metric registry: a metric registered by a test alone is scored and reported end to end
(``flanforge eval`` in one process), built-ins are one file and one registration each, and a task's
unknown metric names the closest registered one."""

import ast
import json
from pathlib import Path

import pytest
import yaml

from flanforge.errors import TaskError
from flanforge.launcher.evaluation import metrics
from flanforge.launcher.evaluation.metrics import Generation, Metric
from flanforge.launcher.evaluation.tasks import EvalExample
from flanforge.mixtures import registry

from .conftest import evaluate

METRICS_DIR = Path(metrics.__file__).parent


class FirstWord(Metric):
    """Right when the answer's first word is a reference's first word (case-insensitive)."""

    name = "first_word"
    reports = ("first_word_match",)

    def score_generation(self, generation, references):
        def first(text):
            return (text.split() or [""])[0].lower()

        return {"first_word_match": 100.0 * any(first(generation.answer) == first(r) for r in references)}


class AnswerLength(Metric):
    """Characters in the answer: lower is better."""

    name = "answer_length"
    reports = ("answer_chars",)
    higher_is_better = False

    def score_generation(self, generation, references):
        return {"answer_chars": float(len(generation.answer))}


@pytest.fixture
def registered():
    registry.reset()
    added = [metrics.register(FirstWord()), metrics.register(AnswerLength())]
    yield added
    for metric in added:
        metrics.unregister(metric.name)
    registry.reset()


def write_task(tmp_path, name, metric):
    rows = [{"q": f"say {w} twice", "a": f"{w} {w}"} for w in ("red", "blue", "green", "gold", "teal", "pink")]
    (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = {"task": name, "source": {"path": f"{name}.jsonl", "holdout": {"validation": 3}}, "metric": metric,
            "templates": [{"id": "t", "input": "{{ q }}:", "target": "{{ a }}"}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_metric_registered_by_a_test_appears_in_results(registered, hf_dir, tmp_path, capsys):
    task = write_task(tmp_path, "echo_first", "first_word")
    out = tmp_path / "eval"
    assert evaluate(capsys, hf_dir, "--suites", task, "--out", out, "--max-examples", 3) == 0
    result = json.loads((out / "results.json").read_text())["suites"]["echo_first"]["tasks"]["echo_first"]
    assert set(result["metrics"]) == {"first_word_match"} and result["n"] == 3
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    by_hand = [FirstWord().score(EvalExample(p["prompt"], tuple(p["references"])),
                                 Generation(p["generation"], p["prediction"]))["first_word_match"] for p in predictions]
    assert [p["scores"]["first_word_match"] for p in predictions] == by_hand
    assert result["metrics"]["first_word_match"] == pytest.approx(sum(by_hand) / len(by_hand))


def test_the_report_reads_each_metrics_direction(registered, hf_dir, tmp_path, capsys):
    """--compare against a baseline with longer answers: fewer characters is 'better', as the metric says."""
    task = write_task(tmp_path, "short_answer", "answer_length")
    out = tmp_path / "eval"
    assert evaluate(capsys, hf_dir, "--suites", task, "--out", out, "--max-examples", 3) == 0
    results = json.loads((out / "results.json").read_text())
    chars = results["suites"]["short_answer"]["tasks"]["short_answer"]["metrics"]["answer_chars"]
    baseline = json.loads(json.dumps(results))
    baseline["suites"]["short_answer"]["tasks"]["short_answer"]["metrics"]["answer_chars"] = chars + 5.0
    (tmp_path / "base.json").write_text(json.dumps(baseline))
    compared = tmp_path / "compared"
    assert evaluate(capsys, hf_dir, "--suites", task, "--out", compared, "--max-examples", 3,
                    "--compare", tmp_path / "base.json") == 0
    assert "-5.0 (better)" in (compared / "report.md").read_text()
    assert metrics.higher_is_better("first_word_match") and not metrics.higher_is_better("answer_chars")


def test_builtins_are_one_file_and_one_registration_each():
    registered_by = {}
    for path in sorted(METRICS_DIR.glob("*.py")):
        if path.name in ("__init__.py", "base.py"):
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "register"]
        assert len(calls) == 1, path.name
        registered_by[path.stem] = calls[0].args[0].func.id
    assert sorted(registered_by) == sorted(metrics.names()) == ["accuracy", "exact_match", "rouge"]


def test_registering_a_name_or_a_reported_number_twice_is_refused(registered):
    with pytest.raises(ValueError, match="'first_word' is already registered"):
        metrics.register(FirstWord())
    clash = type("Clash", (AnswerLength,), {"name": "clash"})()
    with pytest.raises(ValueError, match=r"\['answer_chars'\] already reported"):
        metrics.register(clash)


def test_a_task_naming_an_unknown_metric_names_the_file_and_the_closest(tmp_path):
    from flanforge.launcher.evaluation.suites import build_suite

    registry.reset()
    task = write_task(tmp_path, "typo", "exact_mach")
    with pytest.raises(TaskError, match=r"typo\.yaml: task 'typo': unknown metric 'exact_mach' .*closest: exact_match"):
        build_suite(str(task))
