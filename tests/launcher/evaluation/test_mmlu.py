"""The MMLU suite: the prompt byte for byte, categories, question-weighted means, the results contract."""

import json

import pytest

from flanforge.launcher.cli import main
from flanforge.launcher.evaluation import mmlu
from flanforge.launcher.evaluation.evaluator import SuiteResult, TaskResult
from flanforge.launcher.evaluation.report import results_dict
from flanforge.launcher.evaluation.suites import build_suite
from flanforge.launcher.evaluation.tasks import EvalExample, EvalTask, Suite

from ...mixtures.test_mmlu_reader import write_subject
from .conftest import evaluate

PHYSICS_DEV = [["What is c?", "1", "2", "3", "4", "C"], ["  Units of force? ", "N", "J", "W", "Pa", "A"]]
PHYSICS_TEST = [["\nWhich is a vector?\n", "mass", "None", "velocity\nor speed", "time", "C"]]


def write_fixture(root):
    write_subject(root, "dev", "college_physics", PHYSICS_DEV)
    write_subject(root, "test", "college_physics", PHYSICS_TEST)
    write_subject(root, "dev", "philosophy", [[f"P{i}", "a", "b", "c", "d", "B"] for i in range(5)])
    write_subject(root, "test", "philosophy", [[f"Q{i}", "a", "b", "c", "d", "ABCD"[i % 4]] for i in range(3)])
    return root


def test_the_prompt_is_byte_for_byte_the_anchors(tmp_path):
    suite = build_suite(f"mmlu:{write_fixture(tmp_path)}", shots=2)
    physics = next(t for t in suite.tasks if t.name == "college_physics")
    expected = ("The following are multiple choice questions (with answers) about college physics.\n\n"
                "What is c?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: C\n\n"
                "Units of force?\nA. N\nB. J\nC. W\nD. Pa\nAnswer: A\n\n"
                "Which is a vector?\nA. mass\nB. None\nC. velocity\nor speed\nD. time\nAnswer:")
    [example] = physics.examples
    assert example.prompt == expected
    assert example.options == ("A", "B", "C", "D") and example.correct == (2,) and example.references == ("C",)
    assert physics.cluster == "stem" and physics.format == "fs_opt"
    zero = build_suite(f"mmlu:{tmp_path}", shots=0).tasks[0].examples[0]
    assert zero.prompt == ("The following are multiple choice questions (with answers) about college physics.\n\n"
                           "Which is a vector?\nA. mass\nB. None\nC. velocity\nor speed\nD. time\nAnswer:")
    assert build_suite(f"mmlu:{tmp_path}", shots=2).tasks[0].examples == physics.examples  # the same every time


def test_the_category_map_is_lm_evals_four_groups_of_57():
    assert sorted(mmlu.CATEGORIES) == ["humanities", "other", "social_sciences", "stem"]
    assert len(mmlu.CATEGORY) == 57 == sum(len(s) for s in mmlu.CATEGORIES.values())
    assert mmlu.CATEGORY["anatomy"] == "stem" and mmlu.CATEGORY["jurisprudence"] == "humanities"


def _result(name, cluster, n, accuracy):
    task = EvalTask(name, cluster, "accuracy", "fs_opt", [EvalExample("p", ("A",), ("A", "B"), (0,))] * n)
    return TaskResult(task, {"accuracy": accuracy}, {}, [])


def test_means_weight_subjects_by_questions_and_the_unweighted_mean_is_beside_them():
    tasks = [_result("virology", "other", 1, 100.0), _result("nutrition", "other", 3, 0.0),
             _result("anatomy", "stem", 4, 50.0)]
    weighted = results_dict("m", "test", [SuiteResult(Suite("mmlu", [], weighted=True, split="test"), tasks)], "lm-eval")
    suite = weighted["suites"]["mmlu"]
    assert suite["mean"]["accuracy"] == pytest.approx((100 + 0 + 4 * 50) / 8)
    assert suite["unweighted_mean"]["accuracy"] == pytest.approx(50.0)
    assert suite["categories"] == {"other": pytest.approx({"accuracy": 25.0}), "stem": {"accuracy": 50.0}}
    assert weighted["convention"] == "lm-eval" and suite["split"] == "test"
    plain = results_dict("m", "test", [SuiteResult(Suite("demo", []), tasks)], "t5x")["suites"]["demo"]
    assert list(plain) == ["mean", "skipped", "tasks"] and plain["mean"]["accuracy"] == pytest.approx(50.0)


def test_eval_writes_the_contract(hf_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = evaluate(capsys, hf_dir, "--suites", f"mmlu:{write_fixture(tmp_path / 'mmlu')}", "--shots", 2,
                    "--convention", "lm-eval", "--out", out)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["convention"] == "lm-eval" and results["split"] == "validation"
    suite = results["suites"]["mmlu"]
    assert suite["split"] == "test" and {t: v["n"] for t, v in suite["tasks"].items()} == {"college_physics": 1,
                                                                                             "philosophy": 3}
    accuracy = {t: v["metrics"]["accuracy"] for t, v in suite["tasks"].items()}
    assert suite["mean"]["accuracy"] == pytest.approx((accuracy["college_physics"] + 3 * accuracy["philosophy"]) / 4)
    assert suite["categories"]["humanities"]["accuracy"] == accuracy["philosophy"]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(len(r["loglikelihoods"]) == 4 and r["prompt"].endswith("Answer:") for r in records)
    assert "lm-eval convention" in (out / "report.md").read_text()


def test_bad_input_is_one_line(hf_dir, tmp_path, capsys):
    root = write_fixture(tmp_path / "mmlu")
    assert main_error(capsys, hf_dir, "--suites", f"mmlu:{root}", "--shots", 6, "--out", tmp_path / "o") == \
        f"subject 'college_physics': --shots 6 asks for 6 exemplars but {root}/data/dev/college_physics_dev.csv has 2 (at most --shots 2)"
    assert "(conventions: t5x, lm-eval); did you mean 'lm-eval'?" in main_error(
        capsys, hf_dir, "--suites", f"mmlu:{root}", "--convention", "lm_eval", "--out", tmp_path / "o")


def main_error(capsys, *argv):
    """The one line a failing ``flanforge eval`` prints (exit 2), from "MMLU " on where it names MMLU."""
    assert main(["eval", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0].split("MMLU ", 1)[-1]
