"""Bad input at the commands and the eval suites, one test per class (issue 23): the exact exit code, one
line on stderr naming the culprit, no traceback. Every command runs in this process (``cli.main``), and
every case fails before a model, tokenizer or mixture would load.

Classes: arguments that cannot be honoured or are given twice, text that is not UTF-8, empty inputs,
names, structure limits, policies (the Flan collection under the run's ``on_bad_record``).
"""

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flanforge.errors import TaskError
from flanforge.launcher.cli import main
from flanforge.launcher.config import ConfigError, load_config
from flanforge.launcher.evaluation.evaluator import SuiteResult, TaskResult
from flanforge.launcher.evaluation.report import report_markdown, results_dict
from flanforge.launcher.evaluation.run import build_suites
from flanforge.launcher.evaluation.suites import build_suite
from flanforge.launcher.evaluation.tasks import EvalTask
from flanforge.mixtures import registry
from flanforge.mixtures.mixture import MAX_DEPTH, Mixture, Rate
from flanforge.mixtures.sources.tabular import jsonl_rows
from flanforge.mixtures.task import Task, Template

DEMO = str(Path(__file__).parents[2] / "configs" / "demo.yaml")
COT_PROMPT = """canary
-----
Evaluate the expression.

Q: True and False is
A: Let's think step by step. True and False = False. So the answer is False.

Q: not False is
A: Let's think step by step. not False = True. So the answer is True.
"""


@pytest.fixture(autouse=True)
def clean_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("FLANFORGE_CACHE", str(tmp_path / "cache"))
    registry.reset()
    yield
    registry.reset()


def error_of(capsys, *argv, code: int = 2) -> str:
    """The one line a command prints on stderr, after checking its exit code and that no traceback came."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def one_line(err: BaseException) -> str:
    assert "\n" not in str(err)
    return str(err)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("argv, option, first, second", [
    (["eval", "M", "--suites", "demo", "--out", "o", "--split", "validation", "--split", "test"], "--split",
     "validation", "test"),
    (["eval", "M", "--suites", "demo", "--out", "o", "--suites", "builtin_heldout"], "--suites", "demo", "builtin_heldout"),
    (["prepare", "demo", "--out", "o", "--workers", "1", "--workers", "2"], "--workers", "1", "2"),
    (["inspect", "demo", "--json", "--json"], "--json", "", ""),
    (["export", "R", "--out", "o", "--tag", "100", "--tag", "200"], "--tag", "100", "200"),
    (["plan", "--config", DEMO, "--nodes", "1", "--nodes", "2"], "--nodes", "1", "2"),
    (["train", "--config", DEMO, "--config", "other.yaml"], "--config", DEMO, "other.yaml"),
])
def test_an_option_given_twice_is_an_error_naming_both(capsys, argv, option, first, second):
    line = error_of(capsys, *argv)
    assert line == (f"flanforge {argv[0]}: error: {option} is given twice ({f'{option} {first}'.strip()}, "
                    f"then {f'{option} {second}'.strip()}); give it once")


@pytest.mark.parametrize("command", ["train", "plan"])
def test_an_override_key_given_twice_is_an_error_naming_both(capsys, command):
    line = error_of(capsys, command, "--config", DEMO, "train.lr=1e-3", "train.max_steps=5", "train.lr=2e-3")
    assert line == (f"flanforge {command}: error: override key 'train.lr' is given twice (train.lr=1e-3, then "
                    "train.lr=2e-3); give it once")


def test_arguments_are_checked_before_any_work(capsys, tmp_path):
    """MODEL is an empty directory: had anything loaded, the error would be about it."""
    model, out, afile = tmp_path / "model", tmp_path / "out", tmp_path / "afile"
    model.mkdir()
    afile.write_text("x")
    base = ["eval", model, "--suites", "demo", "--out", out]
    assert "--max-examples must be at least 1, got 0" in error_of(capsys, *base, "--max-examples", 0)
    assert "--encoding: 'klingon' is not a known text encoding" in error_of(capsys, *base, "--encoding", "klingon")
    assert "--formats names cot twice; name each once" in error_of(capsys, *base, "--formats", "cot", "zero_shot", "cot")
    assert f"MODEL {model}:: no checkpoint tag after ':'" in error_of(capsys, *base[:1], f"{model}:", *base[2:])
    assert "MODEL untuned:: no such run or model directory" in error_of(capsys, "eval", "untuned:", *base[2:])
    assert f"--out {afile}: exists and is not a directory" in error_of(capsys, *base[:-1], afile)
    assert "--out /proc/flanforge/out: cannot write in /proc" in error_of(capsys, *base[:-1], "/proc/flanforge/out")
    assert f"--out {afile}/sub: {afile} is not a directory" in error_of(capsys, *base[:-1], afile / "sub")
    assert not out.exists()
    assert "output_dir /proc/flanforge: cannot write in /proc" in error_of(capsys, "train", "--config", DEMO,
                                                                          "output_dir=/proc/flanforge")
    assert f"--out {afile}: exists and is not a directory" in error_of(capsys, "export", model, "--out", afile)
    assert "--steps must be at least 1, got 0" in error_of(capsys, "inspect", "demo", "--steps", 0)
    assert "--records-per-shard must be at least 1, got 0" in error_of(capsys, "prepare", "demo", "--out", out,
                                                                       "--records-per-shard", 0)
    assert "--data-dir is the Flan collection directory of 'flan2022'; mixture 'demo' does not read it" in error_of(
        capsys, "prepare", "demo", "--out", out, "--data-dir", tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("doc, problem", [
    ([1, 2], "expected an object with 'suites' (an object), got [1, 2]"),
    ({"suites": {"demo": {"mean": {"exact_match": "high"}, "tasks": {}}}},
     'suites.demo.mean must map metric names to numbers, got {"exact_match": "high"}'),
    ({"suites": {"demo": {"mean": {}, "tasks": {"t": {"metrics": {}}}}}},
     "suites.demo.tasks.t must be an object with 'cluster' and 'metrics'"),
    ({"suites": {"mmlu": {"mean": {}, "tasks": {}, "categories": {"stem": None}}}},
     "suites.mmlu.categories.stem must map metric names to numbers, got null"),
])
def test_compare_checks_the_other_results_shape(capsys, tmp_path, doc, problem):
    other = tmp_path / "base" / "results.json"
    other.parent.mkdir()
    other.write_text(json.dumps(doc))
    line = error_of(capsys, "eval", tmp_path, "--suites", "demo", "--out", tmp_path / "out", "--compare", other.parent)
    assert line.startswith(f"flanforge eval: error: --compare: {other} is not a flanforge results.json: {problem}")


def _bbh(root: Path, prompt: bytes = COT_PROMPT.encode()) -> Path:
    (root / "bbh").mkdir(parents=True)
    (root / "cot-prompts").mkdir()
    (root / "bbh" / "boolean_expressions.json").write_text(json.dumps({"examples": [{"input": "not True is",
                                                                                      "target": "False"}]}))
    (root / "cot-prompts" / "boolean_expressions.txt").write_bytes(prompt)
    return root


def _gsm8k(root: Path, test: bytes, solved: int = 1) -> Path:
    root.mkdir()
    (root / "test.jsonl").write_bytes(test)
    (root / "train.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": f"r #### {i}"}) + "\n"
                                              for i in range(solved)))
    return root


def _mmlu(root: Path, dev_rows: int) -> Path:
    for split, n in (("dev", dev_rows), ("test", 1)):
        (root / "data" / split).mkdir(parents=True)
        (root / "data" / split / f"anatomy_{split}.csv").write_text("q,a,b,c,d,A\n" * n)
    return root


def _task_yaml(root: Path, exemplars: int) -> Path:
    (root / "rows.jsonl").write_text("".join(json.dumps({"q": f"q{i}", "a": str(i)}) + "\n" for i in range(8)))
    (root / "task.yaml").write_text(f"""
task: holdouts
source: {{path: rows.jsonl, holdout: {{exemplars: {exemplars}, validation: 2}}}}
templates:
  - {{id: t, input: "{{{{ q }}}}", target: "{{{{ a }}}}"}}
""")
    return root / "task.yaml"


def test_shots_beyond_the_exemplars_name_the_task_and_the_maximum(tmp_path):
    cases = [
        (f"bbh:{_bbh(tmp_path / 'bbh')}", 3, "BBH task 'boolean_expressions': --shots 3 but its prompt file has 2 "
                                             "exemplars (at most --shots 2)"),
        (f"gsm8k:{_gsm8k(tmp_path / 'gsm8k', b'', solved=1)}", 2, "(at most --shots 1)"),
        (f"mmlu:{_mmlu(tmp_path / 'mmlu', 2)}", 5, "MMLU subject 'anatomy': --shots 5 asks for 5 exemplars"),
        (str(_task_yaml(tmp_path, exemplars=2)), 4, "task 'holdouts': --shots 4 but its exemplars split has 2 records "
                                                    "(at most --shots 2)"),
    ]
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "r #### 1"}) + "\n")
    for spec, shots, message in cases:
        with pytest.raises(TaskError) as caught:
            build_suite(spec, kind="few_shot", shots=shots)
        assert message in one_line(caught.value)
    assert len(build_suite(cases[0][0], shots=1).tasks[0].examples[0].prompt.split("Q: ")) == 3  # one exemplar


# --------------------------------------------------------------------------- text that is not UTF-8


def test_suite_files_that_are_not_utf8_name_file_line_byte_and_how_to_declare(tmp_path):
    line = json.dumps({"question": "Combien coûte un café?", "answer": "1 #### 1"}, ensure_ascii=False) + "\n"
    root = _gsm8k(tmp_path / "gsm8k", (line + line).encode("cp1252"))
    with pytest.raises(TaskError) as caught:
        build_suite(f"gsm8k:{root}", shots=0)
    assert one_line(caught.value) == (
        f"{root}/test.jsonl:1: non-UTF-8 bytes b'\\xfb' at byte {line.index('û')} (invalid start byte); save the file "
        "as UTF-8 or declare its encoding (`encoding: cp1252` in the task YAML or mixture member, or "
        "`flanforge eval --encoding cp1252`)")  # cp1252 is one byte a character: the offset is the index
    task = build_suite(f"gsm8k:{root}", shots=0, encoding="cp1252").tasks[0]
    assert task.examples[0].prompt.startswith("Q: Combien coûte un café?")
    bbh = _bbh(tmp_path / "bbh", b"\xef\xbb\xbf" + COT_PROMPT.replace("Evaluate", "\u00c9valuate").encode())
    assert build_suite(f"bbh:{bbh}").tasks[0].examples[0].prompt.startswith("\u00c9valuate")  # UTF-8 with a BOM
    (bbh / "cot-prompts" / "boolean_expressions.txt").write_bytes(COT_PROMPT.replace("Evaluate", "\u00c9valuate")
                                                                 .encode("cp1252"))
    with pytest.raises(TaskError, match=r"boolean_expressions\.txt:3: non-UTF-8 bytes b'\\xc9' at byte 13"):
        build_suite(f"bbh:{bbh}")


def test_a_config_that_is_not_utf8_or_nested_too_deeply_is_a_config_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes("output_dir: caf\u00e9\n".encode("cp1252"))
    with pytest.raises(ConfigError, match=r"c\.yaml:1: non-UTF-8 bytes b'\\xe9' at byte 15 \(invalid continuation "
                                          r"byte\); save the file as UTF-8$"):  # a config has no encoding key
        load_config(config)
    config.write_text("train: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply to be a config"):
        load_config(config)


# --------------------------------------------------------------------------- empty inputs


def test_empty_suites_tasks_and_files_are_errors_naming_them(tmp_path):
    root = _gsm8k(tmp_path / "gsm8k", b"\n\n")
    with pytest.raises(TaskError, match=f"GSM8K: {root}/test.jsonl holds no problems"):
        build_suite(f"gsm8k:{root}")
    with pytest.raises(TaskError, match=r"task 'lonely' \(c\): no examples to score"):
        EvalTask("lonely", "c", "exact_match", "zs_noopt", [])
    args = argparse.Namespace(suites=[str(_task_yaml(tmp_path, exemplars=0))], formats=["cot"], shots=None,
                              split=None, max_examples=None, encoding=None, on_bad_record="error",
                              cot_prompts=None)
    with pytest.raises(TaskError) as caught:
        build_suites(args, None)
    assert one_line(caught.value) == "suite 'holdouts': no task to score (1 skipped: holdouts: no cot format among ['zs_noopt'])"


# --------------------------------------------------------------------------- names and limits


def test_names_are_checked_where_declared():
    def task(name):
        return Task(name, ("q",), (Template("t", "{{ q }}", "{{ q }}"),), source=lambda split: [])

    assert task("cafe\u0301").name == "caf\u00e9"  # NFC: one name, however it was typed
    for name, problem in [("a\u200bb", "ZERO WIDTH SPACE (U+200B)"), ("a\tb", "U+0009"), ("a\u00a0b", "NO-BREAK SPACE"),
                          ("a\u2028b", "LINE SEPARATOR"), ("\ue000", "U+E000"), (" a", "starts or ends with a space"),
                          ("é" * 101, "202 bytes in UTF-8, more than 200")]:
        with pytest.raises(TaskError) as caught:
            task(name)
        assert problem in one_line(caught.value)
    with pytest.raises(TaskError, match="mixture name 'm\\\\u200d' holds ZERO WIDTH JOINER"):
        Mixture("m\u200d", [(task("t"), Rate.fixed(1))])


def test_nesting_has_a_limit_and_no_recursion_error_escapes(tmp_path):
    mixture = Mixture("level0", [(Task("t", ("q",), (Template("t", "{{ q }}", "{{ q }}"),), source=lambda s: []),
                                  Rate.fixed(1))])
    with pytest.raises(TaskError) as caught:
        for depth in range(1, 250):
            mixture = Mixture(f"level{depth}", [(mixture, Rate.fixed(1))])
    assert depth == MAX_DEPTH and one_line(caught.value) == (
        f"mixture 'level{MAX_DEPTH}': nested {MAX_DEPTH + 1} mixtures deep, more than the limit of {MAX_DEPTH} "
        f"(level{MAX_DEPTH} > level{MAX_DEPTH - 1} > level{MAX_DEPTH - 2} > ... > level0)")
    (tmp_path / "rows.jsonl").write_text('{"q": "x"}\n')
    (tmp_path / "m0.yaml").write_text('task: leaf\nsource: {path: rows.jsonl}\ntemplates: [{id: t, input: "{{ q }}", target: "{{ q }}"}]\n')
    for depth in range(1, 250):
        kind = "task" if depth == 1 else "mixture"
        (tmp_path / f"m{depth}.yaml").write_text(f"mixture: m{depth}\nmembers: [{{{kind}: m{depth - 1}.yaml}}]\n")
    with pytest.raises(TaskError) as caught:
        registry.load_mixture(tmp_path / "m249.yaml")
    assert f"m217.yaml: mixture files nested more than {MAX_DEPTH} deep (the limit), from {tmp_path}/m249.yaml" in \
        one_line(caught.value)
    (tmp_path / "deep.jsonl").write_text('{"q": ' + "[" * 100000 + "]" * 100000 + "}\n")
    assert list(jsonl_rows(tmp_path / "deep.jsonl")) == [(f"{tmp_path}/deep.jsonl:1", "JSON nested too deeply")]


# --------------------------------------------------------------------------- policies


def _collection(root: Path) -> Path:
    rows = [{"inputs": f"q{i}", "targets": None if i == 1 else f"a{i}", "_task_name": "gsm8k", "_task_source": "CoT",
             "_template_type": "zs_opt"} for i in range(4)]
    (root / "cot_zsopt_data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "cot_zsopt_data" / "part.0.parquet")
    return root


def test_the_flan_collection_follows_the_runs_bad_record_policy(capsys, tmp_path):
    data = _collection(tmp_path / "flan")
    line = error_of(capsys, "inspect", "flan2022", "--data-dir", data, "--json")
    assert line == f"flanforge inspect: error: {data}/cot_zsopt_data/part.0.parquet: row 2: missing field 'targets'"
    assert main(["inspect", "flan2022", "--data-dir", str(data), "--json", "--on-bad-record", "skip"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["tasks"]
    assert (row["name"], row["examples"], row["bad_records"]) == ("cot_zsopt/gsm8k", 3, 1)
    registry.reset()
    (tmp_path / "mix.yaml").write_text("mixture: mine\nmembers:\n  - flan_collection: flan\n")
    (task,) = registry.load_mixture(tmp_path / "mix.yaml", "skip").tasks()
    assert (task.num_examples(), task.bad_records) == (3, 1)


def test_eval_suites_follow_the_bad_record_policy_and_count_the_skips(tmp_path):
    good = json.dumps({"question": "q", "answer": "r #### 1"})
    root = _gsm8k(tmp_path / "gsm8k", f"{good}\nnot json\n{good}\n".encode())
    with pytest.raises(TaskError) as caught:
        build_suite(f"gsm8k:{root}", shots=0)
    assert one_line(caught.value).startswith(f"{root}/test.jsonl:2: not a GSM8K record")
    suite = build_suite(f"gsm8k:{root}", shots=0, on_bad_record="skip")
    (task,) = suite.tasks
    assert (len(task.examples), task.bad_records) == (2, 1)
    result = SuiteResult(suite, [TaskResult(task, {"exact_match": 50.0}, {"exact_match": [0.0, 100.0]}, [])])
    data = results_dict("model", "test", [result], "t5x")
    assert data["suites"]["gsm8k"]["tasks"]["gsm8k"]["bad_records"] == 1
    assert "| gsm8k (gsm8k, zs_cot, n=2, invalid=0, bad records skipped=1) |" in report_markdown(data, None, [])
    mmlu = _mmlu(tmp_path / "mmlu", 1)
    (mmlu / "data" / "test" / "anatomy_test.csv").write_text("q,a,b,c,d,A\nq,a,b,c,d,E\nq,a,b\n")
    with pytest.raises(TaskError, match=r"anatomy_test\.csv:2: the answer 'E' is not one of A, B, C, D"):
        build_suite(f"mmlu:{mmlu}", shots=0)
    assert build_suite(f"mmlu:{mmlu}", shots=0, on_bad_record="skip").tasks[0].bad_records == 2


def test_a_task_left_empty_under_skip_is_skipped_and_counted_beside_others(tmp_path):
    from flanforge.launcher.training.preflight import check_mixture, usable

    data = Path(__file__).parent / "data"
    (tmp_path / "empty.jsonl").write_text("")
    for name, path in (("good", data / "good.jsonl"), ("hollow", data / "all_bad.jsonl"), ("blank", tmp_path / "empty.jsonl")):
        (tmp_path / f"{name}.yaml").write_text(f"task: {name}\nsource: {{path: {path}}}\n"
                                               "templates: [{id: t, input: '{{ question }}', target: '{{ answer }}'}]\n")
    (tmp_path / "mix.yaml").write_text("mixture: mix\nmembers:\n  - task: good.yaml\n"
                                       "  - mixture: inner.yaml\n")
    (tmp_path / "inner.yaml").write_text("mixture: inner\nmembers:\n  - task: hollow.yaml\n  - task: blank.yaml\n")
    with pytest.raises(TaskError, match=r"all_bad\.jsonl:1: "):
        check_mixture(registry.load_mixture(tmp_path / "mix.yaml"))
    registry.reset()
    mixture = registry.load_mixture(tmp_path / "mix.yaml", "skip")
    trained, empty = usable(mixture)
    assert empty == ["hollow", "blank"] and [t.name for t in trained.tasks()] == ["good"]
    assert [m.name for m, _ in trained.members] == ["good"]  # the sub-mixture left empty went too
    assert check_mixture(mixture).rates() == {"good": 1.0}
    suite = build_suite(str(tmp_path / "mix.yaml"), split="train", on_bad_record="skip")  # eval skips it too
    assert [t.name for t in suite.tasks] == ["good"] and suite.skipped == {
        "hollow": "no usable 'train' record (3 bad records skipped)", "blank": "no usable 'train' record (0 bad records skipped)"}
    registry.reset()
    with pytest.raises(TaskError, match=r"mixture 'inner': task 'hollow' has no usable train records \(3 bad records skipped\)"):
        usable(registry.load_mixture(tmp_path / "inner.yaml", "skip"))  # nothing would be left
