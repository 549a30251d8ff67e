"""Property-based fuzzing (hypothesis): for structured-random input, the task-YAML loader, each
source reader, template rendering, the mixture/rate layer and the config loader either succeed or raise the project's
own error type (one line), never another exception, and never take long (``deadline``).

Profiles: ``ci`` (the default, a fixed small ``max_examples``, derandomised so CI is repeatable)
and ``long`` for local runs: ``HYPOTHESIS_PROFILE=long pytest tests/bad_inputs/test_fuzz.py``.
"""

import csv
import io
import json
import math
import os
import random
import string
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flanforge.launcher.config import ConfigError, all_keys, config_from_dict, load_config
from flanforge.errors import USER_ERRORS
from flanforge.mixtures import registry
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.sources import task_yaml
from flanforge.mixtures.sources.flan_jsonl import flan_mixture
from flanforge.mixtures.sources.niv2 import niv2_task
from flanforge.mixtures.sources.tabular import TableSource
from flanforge.mixtures.task import SPLITS, Task, TaskError, Template

COMMON = {"deadline": timedelta(seconds=5), "database": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", max_examples=40, derandomize=True, **COMMON)
settings.register_profile("long", max_examples=2000, **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# JSON-like values, with the awkward ones: NaN, infinities, huge numbers, nesting, odd strings.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["{{ q }}", "{{ a }}", "{% if %}", "{{ q * 99999999 }}", "{{ 99 ** 99999 }}", "../x", ""]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def keyed(keys, extra=values):
    """Mappings over known keys (and the odd unknown one) with arbitrary values."""
    key = st.sampled_from(list(keys)) | st.text(max_size=5)
    return st.dictionaries(key, extra, max_size=len(keys))


def one_line(err: BaseException) -> None:
    assert "\n" not in str(err), str(err)


@pytest.fixture(autouse=True)
def clean_registry():
    registry.reset(with_builtins=False)
    yield
    registry.reset()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "rows.jsonl").write_text("".join(json.dumps({"q": f"q{i}", "a": str(i)}) + "\n" for i in range(6)))
    return root


template_spec = keyed(task_yaml.TEMPLATE_KEYS, st.sampled_from(["t", "{{ q }}", "{{ a }}", "{{ q }", None, 3]) | values)
task_spec = st.fixed_dictionaries(
    {"task": st.sampled_from(["fuzzed", "", None, 5])},
    optional={
        "source": keyed(task_yaml.SOURCE_KEYS, st.sampled_from(["rows.jsonl", "table", "niv2", "skip", None]) | values),
        "templates": st.lists(template_spec, max_size=3) | values,
        "fields": st.lists(st.sampled_from(["q", "a", "x"]), max_size=3) | values,
        "formats": st.lists(st.sampled_from(["zs_noopt", "fs_opt", "zs_cot", "bogus"]), max_size=2) | values,
        **{k: values for k in ("options_field", "max_shots", "fewshot_budget", "metric", "instruction_position")},
    },
)


@given(spec=task_spec)
def test_task_yaml_loader(data_dir, spec):
    try:
        task = task_yaml.build_task(spec, data_dir)
        for split in SPLITS:
            task.records(split)
    except TaskError as err:
        one_line(err)


@given(text=st.text(max_size=200) | st.builds(yaml.safe_dump, task_spec))
def test_task_yaml_files(data_dir, text):
    path = data_dir / f"fuzz{random.random()}.yaml"
    path.write_text(text)
    try:
        registry.load_mixture(path)
    except TaskError as err:
        one_line(err)
    finally:
        path.unlink()


rows = st.lists(st.dictionaries(st.sampled_from(["q", "a", "task_name", "inputs", "targets"]), values, max_size=4), max_size=4)
raw_lines = st.lists(st.one_of(st.builds(lambda r: json.dumps(r, allow_nan=True), rows.map(lambda r: r[0] if r else {})),
                               st.binary(max_size=30).map(lambda b: b.decode("latin-1"))), max_size=4)


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def read_all(source) -> None:
    for split in SPLITS:
        records = source(split)
        for record in records:  # what passed the checks can be rendered as text
            for value in record.values():
                assert not isinstance(value, dict) and not (isinstance(value, float) and not math.isfinite(value))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
@given(lines=raw_lines, policy=st.sampled_from(["error", "skip"]))
def test_table_readers(tmp_path, suffix, lines, policy):
    path = write(tmp_path / f"data{suffix}", "\n".join(lines))
    try:
        read_all(TableSource({"train": path}, fields=("q", "a"), target_fields=("a",), on_bad_record=policy))
    except TaskError as err:
        one_line(err)


@given(doc=st.fixed_dictionaries({}, optional={k: values | st.lists(keyed(["input", "output", "id"]), max_size=3)
                                                for k in ("Definition", "Instances", "Positive Examples")}) | values)
def test_niv2_reader(tmp_path, doc):
    path = write(tmp_path / "task001_fuzz.json", json.dumps(doc, allow_nan=True))
    try:
        read_all(niv2_task(path).source)
    except TaskError as err:
        one_line(err)


@given(lines=st.lists(st.builds(lambda r: json.dumps(r, allow_nan=True),
                                keyed(["inputs", "targets", "task_name", "task_source", "template_type"])), max_size=4))
def test_flan_reader(tmp_path, lines):
    path = write(tmp_path / "flan.jsonl", "\n".join(lines))
    try:
        for task in flan_mixture(path, "flan").tasks():
            read_all(task.source)
    except TaskError as err:
        one_line(err)


def toy_task(name: str, n: int) -> Task:
    records = [{"q": str(i), "a": str(i)} for i in range(n)]
    return Task(name, ("q", "a"), (Template("t", "{{ q }}", "{{ a }}"),), source=lambda split: records if split == "train" else [])


# Template expressions built from the costly pieces: repetition, concatenation, formatting widths,
# padding and joining methods and filters, over a long record field and big constants.
COSTLY = ["{a} * {n}", "{a} ~ {b}", "{a} + {b}", "'%{n}d' % {a}", "'{{:>{n}}}'.format({a})", "{a}|center({n})",
          "{a}|indent({n})", "{a}|join({b})", "{a}.ljust({n})", "{a}|replace('', {b})", "({a})|list"]
template_expr = st.recursive(
    st.sampled_from(["q", "'x'", "[q]", "10 ** 6", "range(100000)", "q|length"]),
    lambda inner: st.builds(lambda op, a, b, n: op.format(a=a, b=b, n=n), st.sampled_from(COSTLY), inner, inner,
                            st.sampled_from([3, 999, 10**6, 999999999, "q|length"])),
    max_leaves=4,
)
template_body = st.builds(lambda e: f"{{{{ {e} }}}}", template_expr) | st.builds(
    lambda a, b, e: f"{{% for i in {a} %}}{{% for j in {b} %}}{{{{ {e} }}}}{{% endfor %}}{{% endfor %}}",
    template_expr, template_expr, template_expr)


@given(body=template_body)
def test_template_cost_is_bounded(body):
    """Any mix of the costly pieces renders, or is a TaskError naming the task and template, within the deadline."""
    record = {"q": "ab " * 1500, "a": "x"}
    try:
        task = Task("costly", ("q", "a"), (Template("t", body, "{{ a }}"),), source=lambda split: [record])
        task.render(record, random.Random(0), 0)
    except TaskError as err:
        one_line(err)
        assert "task 'costly', template 't'" in str(err)


numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 10**6) | st.none() | st.text(max_size=3)


@given(rates=st.lists(st.tuples(numbers, numbers, numbers), min_size=1, max_size=4),
       sizes=st.lists(st.integers(0, 50), min_size=4, max_size=4),
       overrides=st.dictionaries(st.sampled_from(["t0", "t1", "inner", "nope"]), numbers, max_size=2))
def test_mixture_rates(rates, sizes, overrides):
    try:
        members = [(toy_task(f"t{i}", sizes[i]), Rate(weight=w, cap=c, temperature=t)) for i, (w, c, t) in enumerate(rates)]
        mixture = Mixture("outer", [(Mixture("inner", members), Rate.fixed(1.0))])
        result = mixture.rates(overrides)
    except TaskError as err:
        one_line(err)
        return
    assert math.isclose(sum(result.values()), 1.0) and all(0 <= p <= 1 for p in result.values())


config_leaf = st.sampled_from([k for k in all_keys() if "." in k]) | st.text(string.ascii_lowercase + ".", max_size=12)


@given(tree=st.dictionaries(config_leaf, values | st.sampled_from(["1e-3", "-1", ".nan", "cosine", "t5"]), max_size=5))
def test_config_loader(tree):
    data: dict = {}
    for key, value in tree.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = value
    try:
        cfg = config_from_dict(data)
    except ConfigError as err:
        one_line(err)
        return
    assert math.isfinite(cfg.train.lr) and cfg.train.lr > 0 and cfg.train.grad_clip >= 0


@given(overrides=st.lists(st.builds(lambda k, v: f"{k}={v}", config_leaf, st.text(max_size=8)), max_size=3))
def test_config_overrides(overrides):
    try:
        load_config(None, overrides)
    except USER_ERRORS as err:
        one_line(err)


# --------------------------------------------------------------------------- eval: its arguments and suite files

EVAL_OPTIONS = {
    "--suites": st.lists(st.sampled_from(["demo", "dmeo", "bbh", "gsm8k:", "mmlu:/nope", "x.yaml", ""]), min_size=1,
                         max_size=2),
    "--out": st.sampled_from(["OUT", "AFILE", "AFILE/sub", "/proc/flanforge/out", ""]),
    "--split": st.sampled_from(["validation", "test", "train"]),
    "--max-examples": st.sampled_from(["0", "-1", "2", "x", "1e3"]),
    "--shots": st.sampled_from(["-1", "0", "100000", "3", ""]),
    "--formats": st.lists(st.sampled_from(["zero_shot", "few_shot", "cot", "inverted"]), min_size=1, max_size=2),
    "--compare": st.sampled_from(["AFILE", "OUT", "/nope"]),
    "--convention": st.sampled_from(["t5x", "lm-eval", "bogus"]),
    "--batch-size": st.sampled_from(["0", "1", "-4"]),
    "--encoding": st.sampled_from(["cp1252", "klingon", ""]),
}
eval_argv = st.tuples(
    st.sampled_from(["EMPTY", "EMPTY:", "EMPTY:7", "untuned:", "untuned:EMPTY", "/nope", "AFILE", ":", ""]),
    st.lists(st.sampled_from(sorted(EVAL_OPTIONS)).flatmap(lambda o: st.tuples(st.just(o), EVAL_OPTIONS[o])),
             max_size=5),
)


@settings(max_examples=25)
@given(argv=eval_argv)
def test_eval_arguments(tmp_path_factory, capsys, argv):
    """No MODEL here holds a model: every run ends in one line and exit 2 (argparse's own errors print their
    usage first, its last line then says what is wrong)."""
    from flanforge.launcher.cli import main

    root = tmp_path_factory.mktemp("eval_args")
    (root / "EMPTY").mkdir()
    (root / "AFILE").write_text("{}")
    places = {"EMPTY": str(root / "EMPTY"), "AFILE": str(root / "AFILE"), "OUT": str(root / "OUT")}
    fill = lambda text: next((text.replace(k, v, 1) for k, v in places.items() if text.startswith(k)), text)  # noqa: E731
    model, options = argv
    args = [fill(model)] + [item for option, value in options
                            for item in (option, *(map(fill, value) if isinstance(value, list) else [fill(value)]))]
    try:
        code = main(["eval", *args])
    except SystemExit as stop:  # argparse: a missing or malformed value
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and lines[-1].startswith("flanforge eval: error: "), err
    assert len(lines) == 1 or lines[0].startswith("usage: "), err


bbh_prompt = st.sampled_from(["", "Q: x\nA: y", "canary\n-----\nDo it.\n\nQ: a\nA: b. So the answer is c.\n",
                              "Q: a\nA: So the answer is (A).\n\nQ: b\nA: So the answer is (B).\n"])
file_bytes = st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                       st.sampled_from(["café", "\ufeff{}", "caf\u00e9"]).map(lambda s: s.encode("cp1252", "replace")))
bbh_examples = st.lists(st.fixed_dictionaries({"input": st.text(max_size=6), "target": st.text(max_size=3)}),
                        max_size=3) | values
gsm8k_lines = st.lists(st.one_of(
    st.builds(lambda q, a: json.dumps({"question": q, "answer": a}, ensure_ascii=False), st.text(max_size=8),
              st.sampled_from(["r #### 3", "#### ", "3", "a####b####c", "r <<1+2=3>> #### 1,234"])),
    file_bytes.map(lambda b: b.decode("latin-1"))), max_size=4)
cell = st.text(max_size=4) | st.sampled_from(["None", "x,y", '"', "a\nb"])
mmlu_rows = st.lists(st.tuples(cell, cell, cell, cell, cell, st.sampled_from(["A", "B", "C", "D"])).map(list)
                     | st.lists(cell | st.sampled_from(["A", "E", ""]), max_size=7), max_size=6)


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


GOOD_SUITE_FILES = {
    "prompt": "canary\n-----\nDo it.\n\nQ: a\nA: b. So the answer is c.\n", "examples": [{"input": "x", "target": "y"}],
    "test": [json.dumps({"question": "q", "answer": "r #### 1"})], "train": [json.dumps({"question": "p", "answer": "#### 2"})],
    "rows": [["q", "a", "b", "c", "d", "A"]], "dev": [["q", "a", "b", "c", "d", "B"]], "shots": 1, "encoding": None,
    "raw": b"", "policy": "error",
}


@example(kind="bbh", **GOOD_SUITE_FILES)
@example(kind="bbh_cot", **GOOD_SUITE_FILES)
@example(kind="gsm8k", **GOOD_SUITE_FILES)
@example(kind="mmlu", **GOOD_SUITE_FILES)
@given(kind=st.sampled_from(["bbh", "bbh_cot", "gsm8k", "mmlu"]), prompt=bbh_prompt | file_bytes.map(lambda b: b.decode("latin-1")),
       examples=bbh_examples, test=gsm8k_lines, train=gsm8k_lines, rows=mmlu_rows, dev=mmlu_rows,
       shots=st.sampled_from([None, 0, 1, 2, 6]), encoding=st.sampled_from([None, "cp1252"]), raw=file_bytes,
       policy=st.sampled_from(["error", "skip"]))
def test_eval_suite_files(tmp_path_factory, kind, prompt, examples, test, train, rows, dev, shots, encoding, raw,
                          policy):
    """A BBH/GSM8K/MMLU-layout directory of anything: a suite whose every task has examples, or one line."""
    from flanforge.launcher.evaluation.suites import build_suite

    root = tmp_path_factory.mktemp("suite")
    if kind.startswith("bbh"):
        (root / "bbh").mkdir()
        (root / "cot-prompts").mkdir()
        write(root / "bbh" / "t.json", raw if raw.startswith(b"\xff") else json.dumps({"examples": examples},
                                                                                      allow_nan=True))
        write(root / "cot-prompts" / "t.txt", prompt.encode("latin-1", "replace"))
    elif kind == "gsm8k":
        write(root / "test.jsonl", "\n".join(test).encode("utf-8", "surrogatepass"))
        write(root / "train.jsonl", "\n".join(train).encode("utf-8", "surrogatepass") + raw)
    else:
        for split, table in (("test", rows), ("dev", dev)):
            (root / "data" / split).mkdir(parents=True)
            write(root / "data" / split / f"anatomy_{split}.csv", csv_text(table))
    try:
        suite = build_suite(f"{kind}:{root}", shots=shots, encoding=encoding, on_bad_record=policy)
    except TaskError as err:
        one_line(err)
        return
    assert suite.tasks and all(task.examples for task in suite.tasks)


@example(spec={"task": "fuzzed", "source": {"path": "rows.jsonl", "holdout": {"exemplars": 2, "validation": 2}},
               "templates": [{"id": "t", "input": "{{ q }}", "target": "{{ a }}"}]}, kind="few_shot", shots=2)
@given(spec=task_spec, kind=st.sampled_from(["zero_shot", "few_shot", "cot"]), shots=st.none() | st.integers(0, 5))
def test_task_yaml_suites(data_dir, spec, kind, shots):
    """A task YAML as an eval suite: a suite whose every task has examples, or one line."""
    from flanforge.launcher.evaluation.suites import build_suite

    path = data_dir / f"suite{random.random()}.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        suite = build_suite(str(path), kind=kind, shots=shots)
    except TaskError as err:
        one_line(err)
        return
    finally:
        path.unlink()
    assert suite.tasks and all(task.examples for task in suite.tasks)
