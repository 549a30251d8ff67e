"""Evaluation suites: rendering through the task layer, original-task templates, BBH and GSM8K layouts, bad input."""

import json
import os
import re

import pytest

from flanforge.mixtures import registry
from flanforge.launcher.evaluation.suites import build_suite, pick_format
from flanforge.mixtures.sources.benchmarks import parse_cot_prompt
from flanforge.mixtures.task import TaskError


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.reset()
    yield
    registry.reset()


def test_demo_suite_zero_shot_renders_validation_records():
    suite = build_suite("demo", max_examples=5)
    names = {t.name for t in suite.tasks}
    assert names == {"demo_reverse_words", "demo_change_case", "demo_sentiment", "demo_sort_numbers", "demo_add",
                     "demo_number_to_words"}
    task = next(t for t in suite.tasks if t.name == "demo_add")
    assert task.cluster == "demo_numbers" and task.format == "zs_noopt" and len(task.examples) == 5
    record = registry.get_task("demo_add").records("validation")[0]
    assert task.examples[0].references == (record["answer"],)
    assert record["problem"] in task.examples[0].prompt
    # The same suite again renders the same prompts (seeded per task and record).
    assert build_suite("demo", max_examples=5).tasks[0].examples == suite.tasks[0].examples


def test_option_tasks_are_rank_classified_with_their_options():
    suite = build_suite("builtin_heldout", max_examples=3)
    task = next(t for t in suite.tasks if t.name.startswith("anagram_check"))
    assert task.metric == "accuracy" and task.format == "zs_opt" and task.cluster == "anagram_check"
    for ex in task.examples:
        assert ex.options and [ex.options[i] for i in ex.correct] == [ex.references[0]]


def test_few_shot_uses_exactly_k_exemplars():
    suite = build_suite("demo", kind="few_shot", shots=1, max_examples=4)
    assert "demo_sentiment" in suite.skipped  # it has no few-shot format: counted, not scored
    task = next(t for t in suite.tasks if t.name == "demo_add")
    assert task.format == "fs_noopt"
    registry.reset()
    two = build_suite("builtin_arithmetic", kind="few_shot", shots=2, max_examples=2)
    prompt = two.tasks[0].examples[0].prompt
    one = build_suite("builtin_arithmetic", kind="few_shot", shots=1, max_examples=2).tasks[0].examples[0].prompt
    assert len(prompt) > len(one)


def test_cot_kind_extracts_answers(tmp_path):
    suite = build_suite("demo", kind="cot", max_examples=2)
    assert [t.name for t in suite.tasks] == ["demo_add"]
    task = suite.tasks[0]
    assert task.format == "zs_cot" and task.answer_pattern is not None


def test_heldin_samples_every_cluster():
    suite = build_suite("builtin_heldin", max_examples=1)
    clusters = {t.cluster for t in suite.tasks}
    assert len(clusters) == 8 and all(c.startswith("builtin_") for c in clusters)
    assert len(suite.tasks) == 3 * 8


def test_unknown_suite_names_closest():
    with pytest.raises(TaskError, match=r"unknown suite 'buitin_heldout'.*closest: builtin_heldout"):
        build_suite("buitin_heldout")


def test_missing_split_names_the_task():
    with pytest.raises(TaskError, match=r"task 'demo_\w+': unknown split 'test'"):
        build_suite("demo", split="test")


def _write_task(tmp_path, metric, options=True, promptsource=False):
    rows = [{"q": f"is {i} even", "a": "yes" if i % 2 == 0 else "no", "opts": "yes|||no"} for i in range(12)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = {"task": "even_check", "source": {"path": "data.jsonl", "holdout": {"validation": 4}}, "metric": metric}
    if options:
        spec["options_field"] = "opts"
    if promptsource:
        spec["promptsource"] = "templates.yaml"
        spec.pop("options_field", None)
        (tmp_path / "templates.yaml").write_text(
            "templates:\n"
            "  t1: !Template\n    name: original\n    jinja: 'Q: {{q}}? ||| {{a}}'\n    answer_choices: yes ||| no\n"
            "    metadata: !TemplateMetadata\n      original_task: true\n"
            "  t2: !Template\n    name: other\n    jinja: 'Is it odd? {{q}} ||| {{a}}'\n    answer_choices: yes ||| no\n"
            "    metadata: !TemplateMetadata\n      original_task: false\n")
    else:
        spec["templates"] = [{"id": "t", "input": "{{ q }}?", "target": "{{ a }}"}]
    import yaml

    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec))
    return str(tmp_path / "task.yaml")


def test_yaml_task_with_accuracy_is_rank_classified(tmp_path):
    suite = build_suite(_write_task(tmp_path, "accuracy"))
    assert suite.name == "even_check"
    task = suite.tasks[0]
    assert task.metric == "accuracy" and len(task.examples) == 4
    assert all(ex.options == ("yes", "no") for ex in task.examples)


def test_promptsource_evaluates_only_original_task_templates(tmp_path):
    task = build_suite(_write_task(tmp_path, "accuracy", promptsource=True)).tasks[0]
    assert all(ex.prompt.startswith("Q: ") for ex in task.examples)
    assert all(ex.options == ("yes", "no") for ex in task.examples)


def test_accuracy_without_options_names_the_task(tmp_path):
    with pytest.raises(TaskError, match="task 'even_check': rank classification .* needs answer options"):
        build_suite(_write_task(tmp_path, "accuracy", options=False))


def test_unknown_metric_names_closest(tmp_path):
    with pytest.raises(TaskError, match=r"task.yaml: task 'even_check': unknown metric 'acuracy'.*closest: accuracy"):
        build_suite(_write_task(tmp_path, "acuracy"))


def test_pick_format_prefers_options_for_rank_classification():
    task = registry.get_task("demo_sentiment")
    assert task.metric == "accuracy" and pick_format(task, "zero_shot", None) == "zs_opt"
    assert pick_format(task, "few_shot", 2) is None  # it has no few-shot format
    assert pick_format(registry.get_task("demo_add"), "zero_shot", None) == "zs_noopt"
    assert pick_format(registry.get_task("demo_add"), "cot", 0) == "zs_cot"


# --------------------------------------------------------------------------- BBH / GSM8K fixtures

COT_PROMPT = """CANARY LINE
-----
Evaluate the expression.

Q: True and False is
A: Let's think step by step.
True and False = False. So the answer is False.

Q: not False is
A: Let's think step by step.
not False = True. So the answer is True.
"""


def _bbh(tmp_path):
    (tmp_path / "bbh").mkdir()
    (tmp_path / "cot-prompts").mkdir()
    examples = [{"input": "True or False is", "target": "True"}, {"input": "not True is", "target": "False"}]
    (tmp_path / "bbh" / "boolean_expressions.json").write_text(json.dumps({"canary": "x", "examples": examples}))
    (tmp_path / "cot-prompts" / "boolean_expressions.txt").write_text(COT_PROMPT)
    return tmp_path


def test_parse_cot_prompt(tmp_path):
    description, shots = parse_cot_prompt(_bbh(tmp_path) / "cot-prompts" / "boolean_expressions.txt")
    assert description == "Evaluate the expression."
    assert [(q, a) for q, _, a in shots] == [("True and False is", "False"), ("not False is", "True")]
    assert shots[0][1].startswith("Let's think step by step.") and shots[0][1].endswith("So the answer is False.")


def test_bbh_direct_and_cot_prompts(tmp_path):
    root = _bbh(tmp_path)
    direct = build_suite(f"bbh:{root}").tasks[0]
    assert direct.name == "boolean_expressions" and direct.cluster == "bbh" and direct.answer_pattern is None
    assert direct.examples[0].prompt.endswith("Q: not False is\nA: True\n\nQ: True or False is\nA:")
    assert "step by step" not in direct.examples[0].prompt
    cot = build_suite(f"bbh_cot:{root}", max_examples=1).tasks[0]
    assert len(cot.examples) == 1 and cot.answer_pattern is not None
    assert cot.examples[0].prompt.endswith("So the answer is True.\n\nQ: True or False is\nA: Let's think step by step.")
    assert cot.stops == ("\n\nQ:",)


def test_bbh_bad_input(tmp_path):
    with pytest.raises(TaskError, match="reads its data from a directory: --suites bbh:"):
        build_suite("bbh")
    with pytest.raises(TaskError, match="no BBH tasks"):
        build_suite(f"bbh:{tmp_path}")
    root = _bbh(tmp_path)
    (root / "cot-prompts" / "boolean_expressions.txt").unlink()
    with pytest.raises(TaskError, match="BBH task 'boolean_expressions': its prompt .* is missing"):
        build_suite(f"bbh:{root}")


def test_gsm8k(tmp_path):
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i:,}"}
            for i in range(998, 1002)]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]))
    task = build_suite(f"gsm8k:{tmp_path}", shots=2).tasks[0]
    assert task.format == "fs_cot" and [e.references for e in task.examples][-1] == ("2002",)
    assert task.examples[0].prompt.startswith("Q: What is 998 + 998?\nA: 998 + 998 = 1996 So the answer is 1996.")
    assert re.search(r"Q: What is 1001 \+ 1001\?\nA:$", task.examples[-1].prompt)
    zero = build_suite(f"gsm8k:{tmp_path}", shots=0).tasks[0]
    assert zero.examples[0].prompt == "Q: What is 998 + 998?\nA: Let's think step by step."
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "no final"}\n')
    with pytest.raises(TaskError, match=r"test.jsonl:1: not a GSM8K record"):
        build_suite(f"gsm8k:{tmp_path}")


def test_prompts_are_the_same_in_every_process(tmp_path):
    """A format's drawn phrasings (options header, few-shot delimiters) come from an RNG seeded by the task
    and the example: two processes with different hash seeds render the same prompts."""
    import subprocess
    import sys

    task = _write_task(tmp_path, "accuracy")
    code = ("import json, sys; from flanforge.launcher.evaluation.suites import build_suite; "
            "print(json.dumps([[e.prompt for e in t.examples] for kind in ('zero_shot',) "
            "for t in build_suite(sys.argv[1], kind=kind, shots=2).tasks]))")
    runs = [subprocess.run([sys.executable, "-c", code, task], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    prompts = json.loads(runs[0])
    assert runs[0] == runs[1] and len(prompts[0]) == 4 and all(prompts)
