"""Sources read small fixture files written here: tables, datasets on disk, NIV2, Flan exports, promptsource."""

import json
import random

import pytest

from flanforge.mixtures.sources.base import record_key
from flanforge.mixtures.sources.flan_jsonl import flan_mixture
from flanforge.mixtures.sources.niv2 import niv2_task
from flanforge.mixtures.sources.promptsource import load_templates
from flanforge.mixtures.sources.tabular import TableSource
from flanforge.mixtures.task import Task, TaskError

ROWS = [{"question": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(12)]
FIELDS = {"fields": ("question", "answer"), "target_fields": ("answer",)}


def write_table(path, rows=ROWS):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text("question" + sep + "answer\n" + "".join(f'"{r["question"]}"{sep}{r["answer"]}\n' for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_tables_read_their_records(tmp_path, suffix):
    source = TableSource({"train": write_table(tmp_path / f"data{suffix}")}, **FIELDS)
    assert source("train") == ROWS
    assert source("exemplars") == [] and source.bad_records == 0


def test_datasets_saved_to_disk(tmp_path):
    import datasets

    from flanforge.mixtures.sources.hf_disk import HfDiskSource

    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS[:8]), "test": datasets.Dataset.from_list(ROWS[8:])}
    ).save_to_disk(str(tmp_path / "ds"))
    source = HfDiskSource(tmp_path / "ds", split_names={"train": "train", "validation": "test"}, **FIELDS)
    assert source("train") == ROWS[:8] and source("validation") == ROWS[8:]
    with pytest.raises(TaskError, match="no saved split 'dev'"):
        HfDiskSource(tmp_path / "ds", split_names={"train": "dev"}, **FIELDS)("train")


BAD_LINES = {
    "bad JSON": (b'{"question": "q", "answer": \n', "bad JSON"),
    "missing field": (b'{"question": "q"}\n', "missing field 'answer'"),
    "empty target": (b'{"question": "q", "answer": "  "}\n', "empty target field 'answer'"),
    "non-UTF-8": (b'{"question": "caf\xe9", "answer": "1"}\n', "non-UTF-8 bytes"),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_record_is_an_error_naming_file_line_and_field(tmp_path, kind):
    line, problem = BAD_LINES[kind]
    path = tmp_path / "data.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + line)
    with pytest.raises(TaskError) as err:
        TableSource({"train": path}, **FIELDS)("train")
    assert str(err.value).startswith(f"{path}:2: {problem}")


def test_skipped_bad_records_are_counted_per_source_and_under_a_default_policy(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join([json.dumps(ROWS[0]).encode() + b"\n", *(line for line, _ in BAD_LINES.values()),
                               json.dumps(ROWS[1]).encode() + b"\n"]))
    source = TableSource({"train": path}, on_bad_record="skip", **FIELDS)
    assert source("train") == ROWS[:2] and source.bad_records == 4
    default = TableSource({"train": path}, **FIELDS)
    default.use_default_policy("skip")
    assert len(default("train")) == 2 and default.bad_records == 4
    default.use_default_policy("error")  # records read under another policy are read again
    with pytest.raises(TaskError, match="data.jsonl:2"):
        default("train")
    own = TableSource({"train": path}, on_bad_record="skip", **FIELDS)
    own.use_default_policy("error")  # a source's own policy wins
    assert len(own("train")) == 2


def test_csv_bad_rows_name_their_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"question,answer\nq1,1\nq2\n\xff\xfe,3\n")
    with pytest.raises(TaskError, match=r"data.csv:3: missing field 'answer'"):
        TableSource({"train": path}, **FIELDS)("train")
    skip = TableSource({"train": path}, on_bad_record="skip", **FIELDS)
    assert skip("train") == [{"question": "q1", "answer": "1"}] and skip.bad_records == 2


def test_holdouts_are_disjoint_from_train_even_for_duplicate_rows(tmp_path):
    path = write_table(tmp_path / "data.jsonl", ROWS + ROWS[:6])  # six rows appear twice
    source = TableSource({"train": path}, holdout={"exemplars": 4, "validation": 3}, **FIELDS)
    train, pool, val = source("train"), source("exemplars"), source("validation")
    assert len(pool) == 4 and len(val) == 3
    assert not {record_key(r) for r in train} & {record_key(r) for r in pool + val}
    assert {record_key(r) for r in train + pool + val} == {record_key(r) for r in ROWS}


NIV2 = {
    "Definition": ["Add one to the number and write the result."],
    "Positive Examples": [{"input": "4", "output": "5", "explanation": "4 + 1 = 5"}, {"input": "9", "output": "10"}],
    "Negative Examples": [{"input": "2", "output": "4", "explanation": "wrong"}],
    "Instances": [{"id": f"i{i}", "input": str(i), "output": [str(i + 1), f"{i + 1}.0"]} for i in range(20, 26)]
    + [{"id": "bad", "input": "99", "output": []}],
}


def test_niv2_task_file(tmp_path):
    path = tmp_path / "task999_add_one.json"
    path.write_text(json.dumps(NIV2))
    task = niv2_task(path, on_bad_record="skip")
    assert task.name == "task999_add_one" and task.metric == "rouge"
    train = task.records("train")
    assert len(train) == 6 and task.bad_records == 1
    assert train[0] == {"definition": NIV2["Definition"][0], "input": "20", "output": "21", "outputs": ["21", "21.0"]}
    assert [r["input"] for r in task.records("exemplars")] == ["4", "9"]
    ex = task.render(train[0], random.Random(1), 0, format_name="fs_noopt")
    assert ex.inputs.count(NIV2["Definition"][0]) == 1 and ("5" in ex.inputs or "10" in ex.inputs) and ex.targets == "21"
    with pytest.raises(TaskError, match=r"Instances\[6\]: empty target field 'output'"):
        niv2_task(path).records("train")


def test_flan_collection_export(tmp_path):
    lines = [
        {"inputs": "Is 4 even?\nOPTIONS:\n- yes\n- no", "targets": "yes", "task_name": "parity", "task_source": "Flan2021", "template_type": "zs_opt"},
        {"inputs": "Is 5 even?", "targets": "no", "task_name": "parity", "task_source": "Flan2021", "template_type": "zs_noopt"},
        {"inputs": "Q: 2+2?\nA: 4\n\nQ: 3+3?\nA:", "targets": "6", "task_name": "sums", "task_source": "T0", "template_type": "fs_noopt"},
    ]
    path = tmp_path / "flan.jsonl"
    path.write_text(json.dumps(lines[0]) + "\n{not json\n" + "".join(json.dumps(x) + "\n" for x in lines[1:]))
    mixture = flan_mixture(path, "flan", on_bad_record="skip")
    assert [m.name for m, _ in mixture.members] == ["flan/Flan2021", "flan/T0"]
    parity = {t.name: t for t in mixture.tasks()}["parity"]
    assert parity.formats == ("zs_noopt", "zs_opt") and parity.num_examples() == 2 and parity.bad_records == 1
    ex = parity.render(parity.records()[0], random.Random(0), 0)
    assert (ex.inputs, ex.targets, ex.format) == (lines[0]["inputs"], "yes", "zs_opt")
    with pytest.raises(TaskError, match=r"flan.jsonl:2: bad JSON"):
        flan_mixture(path, "flan").tasks()[0].records()


PROMPTSOURCE = """dataset: toy
templates:
  aaa-1: !Template
    answer_choices: no ||| yes
    id: aaa-1
    jinja: "Is {{n}} even? ||| {{answer_choices[label]}}"
    metadata: !TemplateMetadata
      choices_in_prompt: false
      metrics: [Accuracy]
    name: is_even
    reference: ''
  bbb-2: !Template
    answer_choices: odd ||| even
    id: bbb-2
    jinja: "{{n}}: odd or even? ||| {{ answer_choices[label] }}"
    name: parity_word
"""


def test_promptsource_templates_file(tmp_path):
    (tmp_path / "templates.yaml").write_text(PROMPTSOURCE)
    templates = load_templates(tmp_path / "templates.yaml")
    assert [t.id for t in templates] == ["is_even", "parity_word"]
    rows = [{"n": n, "label": int(n % 2 == 0)} for n in range(10)]
    task = Task("toy", ("n", "label"), templates, lambda split: rows, formats=("zs_opt",))
    expected = {"is_even": ("Is 4 even?", "yes", "- no\n- yes"), "parity_word": ("4: odd or even?", "even", "- odd\n- even")}
    used = set()
    for seed in range(10):
        ex = task.render(rows[4], random.Random(seed), 4)
        prompt, target, options = expected[ex.template_id]
        assert ex.inputs.startswith(prompt) and ex.inputs.endswith(options) and ex.targets == target
        used.add(ex.template_id)
    assert used == set(expected)
    (tmp_path / "evil.yaml").write_text("templates: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(TaskError, match="not a valid templates file"):
        load_templates(tmp_path / "evil.yaml")


def test_hf_datasets_streamed_from_local_files_offline(tmp_path, monkeypatch):
    """``source: {type: hf, path: ..., streaming: true}``: load_dataset's streaming reader, no network."""
    from flanforge.mixtures.sources.hf_stream import HfStreamSource

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    write_table(tmp_path / "data.jsonl")
    source = HfStreamSource("data.jsonl", tmp_path, split_names={"train": "train"}, **FIELDS)
    assert source("train") == ROWS
    folder = tmp_path / "parquet_dataset"
    folder.mkdir()
    write_table(folder / "train.parquet")
    assert HfStreamSource("parquet_dataset", tmp_path, split_names={"train": "train"}, **FIELDS)("train") == ROWS
    source = HfStreamSource("parquet_dataset", tmp_path, split_names={"train": "train", "validation": "nope"}, **FIELDS)
    with pytest.raises(TaskError, match=r"^parquet_dataset: datasets.load_dataset cannot read split 'nope': "):
        source("validation")


def test_the_hf_shorthand_names_the_dataset_and_the_split_it_trains_on(tmp_path, monkeypatch):
    """``source: {hf: NAME_OR_PATH, split: S}`` is ``{type: hf, path: NAME_OR_PATH, splits: {train: S}}``."""
    from flanforge.mixtures.sources.task_yaml import build_task

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "ds"
    folder.mkdir()
    write_table(folder / "train.parquet", ROWS[:3])
    write_table(folder / "test.parquet")
    templates = [{"id": "t", "input": "{{ question }}", "target": "{{ answer }}"}]
    task = build_task({"task": "hf_short", "source": {"hf": "ds", "split": "test"}, "templates": templates}, tmp_path)
    assert task.records("train") == ROWS  # the dataset's test split, not its train split
    with pytest.raises(TaskError, match=r"'hf: NAME' names the dataset and its type; drop 'type'"):
        build_task({"task": "hf_both", "source": {"hf": "ds", "type": "table"}, "templates": templates}, tmp_path)
    with pytest.raises(TaskError, match=r"'split' goes with 'hf: NAME'"):
        build_task({"task": "t_split", "source": {"path": "x.jsonl", "split": "test"}, "templates": templates},
                   tmp_path)
