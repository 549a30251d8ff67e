"""Property-based fuzzing (hypothesis): for structured-random input, the task-YAML loader, each
source reader, template rendering, the mixture/rate layer and the config loader either succeed or raise the project's
own error type (one line), never another exception, and never take long (``deadline``).

Profiles: ``ci`` (the default, a fixed small ``max_examples``, derandomised so CI is repeatable)
and ``long`` for local runs: ``HYPOTHESIS_PROFILE=long pytest tests/bad_inputs/test_fuzz.py``.
"""

import json
import math
import os
import random
import string
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
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
