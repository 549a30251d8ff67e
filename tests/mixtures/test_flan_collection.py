"""The Flan collection as users hold it: parquet part directories and JSONL exports, `flan2022`, its shards.

Fixtures are written here in the published layouts (a few small parquet
parts per sub-mixture variant, with several row groups and the tasks'
rows interleaved; plain and gzipped JSONL), then read back record by record.
"""

import gzip
import json
import os
import random
import signal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import webdataset

from flanforge.launcher import cli
from flanforge.mixtures import registry
from flanforge.mixtures.streaming import shards
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.streaming.shards import Manifest, ShardReader, prepare
from flanforge.mixtures.sources import flan_collection
from flanforge.mixtures.sources.flan_collection import FlanCollection
from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.streaming.stream import MixtureStream
from flanforge.mixtures.task import TaskError
from flanforge.model.tokenizer import train_tokenizer

SOURCES = {"flan": "Flan2021", "t0": "T0", "niv2": "NIv2", "cot": "CoT", "dialog": "Dialog"}
# directory -> parts -> (task, rows) in each part
LAYOUT = {
    "flan_zsopt_data": [[("anli_r1", 7), ("cosmos_qa", 5)], [("anli_r1", 3), ("cosmos_qa", 6)]],
    "flan_fsnoopt_data": [[("anli_r1", 4)]],
    "t0_zsnoopt_data": [[("adversarial_qa", 6)]],
    "niv2_fsopt_data": [[("task001_quoref", 3), ("task002_winogrande", 2)], [("task001_quoref", 4)]],
    "cot_zsopt_data": [[("gsm8k", 4), ("strategyqa", 3)]],
}


def rows_of(directory, part, task, n):
    submix, variant = directory.split("_")[:2]
    return [{
        "inputs": f"{task} {variant} part {part} question {i}: é ünïcode\nline two",
        "targets": f"answer {i} of {task}",
        "_template_idx": i % 3,
        "_task_source": SOURCES[submix],
        "_task_name": task,
        "_template_type": f"{variant[:2]}_{variant[2:]}",
    } for i in range(n)]


def write_parquet_layout(root, layout=LAYOUT):
    """Writes the parquet parts; returns {task key: [expected records in order]}."""
    expected = {}
    for directory, parts in layout.items():
        (root / directory).mkdir(parents=True)
        for p, tasks in enumerate(parts):
            rows = [row for task, n in tasks for row in rows_of(directory, p, task, n)]
            random.Random(p).shuffle(rows)  # tasks interleaved within a part, as in the published parts
            pq.write_table(pa.Table.from_pylist(rows), root / directory / f"part.{p}.parquet", row_group_size=4)
            for row in rows:
                key = f"{directory[:-5]}/{row['_task_name']}"
                record = {"inputs": row["inputs"], "targets": row["targets"], "template_type": row["_template_type"]}
                expected.setdefault(key, []).append(record)
    return expected


@pytest.fixture(autouse=True)
def scan_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLANFORGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def collection(tmp_path):
    expected = write_parquet_layout(tmp_path / "flan")
    return tmp_path / "flan", expected


def read_back(manifest, names):
    reader = ShardReader(manifest)
    return {name: [reader.record(name, i) for i in range(manifest.num_records(name))] for name in names}


def test_parquet_parts_read_back_every_record_through_prepared_shards(collection, tmp_path):
    data_dir, expected = collection
    mixture = FlanCollection(data_dir).mixture()
    assert sorted(t.name for t in mixture.tasks()) == sorted(expected)
    manifest = prepare(mixture, tmp_path / "shards", workers=2, progress=False)
    assert read_back(manifest, expected) == expected
    # the unit shards are plain webdataset: one sample per chunk of one task's records
    urls = sorted(str(p) for p in (tmp_path / "shards" / "collections").glob("*/*.tar"))
    lines = [line for s in webdataset.WebDataset(urls, shardshuffle=False) for line in s["jsonl"].splitlines()]
    assert sorted(json.loads(line)["inputs"] for line in lines) == sorted(r["inputs"] for rs in expected.values() for r in rs)
    task = next(t for t in mixture.tasks() if t.name == "cot_zsopt/gsm8k")
    assert task.records("train")[2] == expected["cot_zsopt/gsm8k"][2]  # before or without shards: read from the parts
    assert task.render(task.records("train")[0], random.Random(0)).format == "zs_opt"


def test_plain_and_gzipped_jsonl_exports_read_back(tmp_path):
    data_dir = tmp_path / "export"
    data_dir.mkdir()
    rows = [{"inputs": f"q{i}", "targets": f"a{i}", "task_name": f"task{i % 3}", "task_source": src,
             "template_type": tt} for i, (src, tt) in enumerate([("Flan2021", "zs_opt"), ("NIv2", "fs_opt")] * 6)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (data_dir / "a.jsonl").write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")
    with gzip.open(data_dir / "b.jsonl.gz", "wt") as f:
        f.write(text[len(text[: len(text) // 2].rsplit("\n", 1)[0]) + 1:])
    mixture = FlanCollection(data_dir).mixture()
    manifest = prepare(mixture, tmp_path / "shards", progress=False)
    expected = {}
    for r in rows:
        variant = r["template_type"].replace("_", "")
        submix = "flan" if r["task_source"] == "Flan2021" else "niv2"
        expected.setdefault(f"{submix}_{variant}/{r['task_name']}", []).append(
            {"inputs": r["inputs"], "targets": r["targets"], "template_type": r["template_type"]})
    assert read_back(manifest, expected) == expected


def test_flan2022_rates_follow_flans_weights_variants_and_caps(collection, monkeypatch):
    data_dir, expected = collection
    monkeypatch.setitem(flan_collection.TASK_CAPS, "flan", 9)  # caps bite on the fixture's flan tasks
    rates = FlanCollection(data_dir).mixture().rates()
    present = {"flan": 0.4, "t0": 0.32, "niv2": 0.2, "cot": 0.05}  # no dialog directory
    total = sum(present.values())
    for submix, weight in present.items():
        assert sum(p for t, p in rates.items() if t.startswith(submix + "_")) == pytest.approx(weight / total)
    flan = {t: p for t, p in rates.items() if t.startswith("flan_")}
    # two variants at equal weight; within zsopt, min(n, 9): anli_r1 has 10 -> 9, cosmos_qa 11 -> 9
    assert flan["flan_zsopt/anli_r1"] == pytest.approx(flan["flan_zsopt/cosmos_qa"])
    assert flan["flan_fsnoopt/anli_r1"] == pytest.approx(0.4 / total / 2)
    niv2 = {t: p for t, p in rates.items() if t.startswith("niv2_")}
    assert niv2["niv2_fsopt/task001_quoref"] / niv2["niv2_fsopt/task002_winogrande"] == pytest.approx(7 / 2)


def test_inspect_json_lists_found_tasks_and_what_the_directory_lacks(collection, capsys):
    data_dir, expected = collection
    (data_dir / "README.md").write_text("notes")
    assert cli.main(["inspect", "flan2022", "--data-dir", str(data_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    found = {t["name"]: t for t in doc["tasks"]}
    assert set(found) == set(expected)
    assert found["t0_zsnoopt/adversarial_qa"]["mixture"] == "t0"
    assert found["t0_zsnoopt/adversarial_qa"]["examples"] == 6
    assert sum(t["rate"] for t in doc["tasks"]) == pytest.approx(1.0)
    assert "dialog_zsopt_data/: no records" in doc["lacks"] and "flan_zsnoopt_data/: no records" in doc["lacks"]
    assert any(line.startswith("README.md: not a Flan collection") for line in doc["lacks"])


def test_config_key_and_yaml_member_name_the_directory(collection, tmp_path):
    data_dir, expected = collection
    with pytest.raises(TaskError, match="set mixture.data_dir"):
        registry.get_mixture("flan2022")
    with pytest.raises(TaskError, match="set mixture.data_dir"):
        registry.load_mixture("flan2022")
    assert sorted(t.name for t in registry.load_mixture("flan2022", data_dir=data_dir).tasks()) == sorted(expected)
    (tmp_path / "mix.yaml").write_text(f"mixture: mine\nmembers:\n  - flan_collection: {data_dir}\n    rate: 3\n"
                                       "  - mixture: demo\n    rate: 1\n")
    mine = registry.load_mixture(str(tmp_path / "mix.yaml"))
    groups = mine.group_of()
    assert sum(p for t, p in mine.rates().items() if groups[t] == "flan2022") == pytest.approx(0.75)


def test_prepare_is_resumable_and_a_crash_leaves_nothing_half_published(collection, tmp_path, monkeypatch):
    data_dir, expected = collection
    mixture = FlanCollection(data_dir).mixture()
    write_unit = flan_collection.write_unit
    calls = []

    def crash_on_the_third_unit(unit, out, policy):
        calls.append(unit.rel)
        if len(calls) == 3:
            (out / f"{unit.stem}-00000.tar.tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt("killed mid-part")
        return write_unit(unit, out, policy)

    monkeypatch.setattr(flan_collection, "write_unit", crash_on_the_third_unit)
    with pytest.raises(KeyboardInterrupt):
        prepare(mixture, tmp_path / "shards", progress=False)
    assert not any(name in shards.write_manifest(tmp_path / "shards").tasks for name in expected)
    calls.clear()
    monkeypatch.setattr(flan_collection, "write_unit", lambda *a: calls.append(a[0].rel) or write_unit(*a))
    manifest = prepare(mixture, tmp_path / "shards", progress=False)
    assert len(calls) == len(FlanCollection(data_dir).units) - 2  # the two finished parts were not redone
    assert read_back(manifest, expected) == expected
    calls.clear()
    prepare(mixture, tmp_path / "shards", progress=False)
    assert calls == []  # a re-run does nothing


def test_a_killed_worker_is_an_error_not_a_hang_and_leaves_nothing_half_published(collection, tmp_path, monkeypatch):
    data_dir, expected = collection
    mixture = FlanCollection(data_dir).mixture()
    write_unit = flan_collection.write_unit

    def killed_in_niv2(unit, out, policy):
        if unit.submix == "niv2":
            (out / f"{unit.stem}-00000.tar.tmp").write_bytes(b"half a shard")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-part
        return write_unit(unit, out, policy)

    monkeypatch.setattr(flan_collection, "write_unit", killed_in_niv2)
    with pytest.raises(shards.ShardError, match="a prepare worker died"):
        prepare(mixture, tmp_path / "shards", workers=2, progress=False)
    assert not any(name in shards.write_manifest(tmp_path / "shards").tasks for name in expected)
    monkeypatch.setattr(flan_collection, "write_unit", write_unit)
    assert read_back(prepare(mixture, tmp_path / "shards", workers=2, progress=False), expected) == expected


def test_slices_split_the_work_and_the_last_one_publishes(collection, tmp_path):
    data_dir, expected = collection
    mixture = Mixture("both", [(FlanCollection(data_dir).mixture(), Rate.fixed(1)),
                               (registry.get_mixture("demo"), Rate.fixed(1))])
    first = prepare(mixture, tmp_path / "shards", progress=False, part=(0, 2))
    assert not set(expected) & set(first.tasks)  # half the collection's parts: not published yet
    second = prepare(mixture, tmp_path / "shards", progress=False, part=(1, 2))
    assert set(second.tasks) == {t.name for t in mixture.tasks()}
    assert read_back(second, expected) == expected


def test_old_format_shards_are_refused_by_the_reader_and_rebuilt_by_prepare(collection, tmp_path):
    data_dir, expected = collection
    mixture = FlanCollection(data_dir).mixture()
    old = tmp_path / "shards"
    (old / "anli").mkdir(parents=True)
    (old / "anli" / "entry.json").write_text(json.dumps({"name": "flan_zsopt/anli_r1", "splits": {}}))
    (old / "manifest.json").write_text(json.dumps({"version": 1, "tasks": {}}))
    with pytest.raises(shards.ShardError, match="old format 1.*flanforge prepare"):
        Manifest.load(old)
    assert read_back(prepare(mixture, old, progress=False), expected) == expected


def test_a_directory_without_a_known_submix_lists_expected_and_found(tmp_path):
    (tmp_path / "mystuff_data").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TaskError, match=r"no Flan collection data; expected .*flan_zsopt_data/.*found: mystuff_data/, notes.txt"):
        FlanCollection(tmp_path)


def test_bad_parts_name_the_file_and_column(tmp_path):
    (tmp_path / "t0_zsopt_data").mkdir()
    part = tmp_path / "t0_zsopt_data" / "part.0.parquet"
    pq.write_table(pa.Table.from_pylist([{"inputs": "q", "_task_name": "x", "_template_type": "zs_opt"}]), part)
    with pytest.raises(TaskError, match=f"{part}: no column 'targets'"):
        FlanCollection(tmp_path).mixture()
    part.write_text("not parquet at all")
    with pytest.raises(TaskError, match=f"{part}: not a parquet file"):
        FlanCollection(tmp_path).mixture()
    (tmp_path / "t0_zsopt_data" / "part.1.csv").write_text("a,b")
    with pytest.raises(TaskError, match="part.1.csv: not a parquet part"):
        FlanCollection(tmp_path)


def test_empty_targets_follow_the_bad_record_policy_and_are_counted(tmp_path):
    rows = rows_of("cot_zsopt_data", 0, "gsm8k", 5)
    rows[1]["targets"] = "  "
    rows[3]["targets"] = None
    (tmp_path / "cot_zsopt_data").mkdir()
    part = tmp_path / "cot_zsopt_data" / "part.0.parquet"
    pq.write_table(pa.Table.from_pylist(rows), part)
    with pytest.raises(TaskError, match=f"{part}: row 2: empty target field 'targets'"):
        FlanCollection(tmp_path).mixture()
    mixture = FlanCollection(tmp_path, on_bad_record="skip").mixture()
    task = mixture.tasks()[0]
    assert task.num_examples() == 3 and task.bad_records == 2
    manifest = prepare(mixture, tmp_path / "shards", progress=False)
    assert manifest.bad_records("cot_zsopt/gsm8k") == 2
    assert [r["targets"] for r in read_back(manifest, ["cot_zsopt/gsm8k"])["cot_zsopt/gsm8k"]] == [
        "answer 0 of gsm8k", "answer 2 of gsm8k", "answer 4 of gsm8k"]


def test_a_stream_over_collection_shards_resumes_mid_shard_exactly(collection, tmp_path):
    data_dir, expected = collection
    mixture = FlanCollection(data_dir).mixture()
    manifest = prepare(mixture, tmp_path / "shards", progress=False)
    texts = [r["inputs"] + " " + r["targets"] for rs in expected.values() for r in rs]
    tokenizer = train_tokenizer(texts, tmp_path / "tok", vocab_size=400)
    cfg = StreamConfig(seed=3, seq_len=64, micro_batch_size=2, block_size=16)

    def batches(state, steps):
        stream = MixtureStream(mixture, tokenizer, cfg, manifest, state=state)
        tracker, it, out = stream.tracker(), stream.worker_batches(0), []
        for _ in range(steps):
            out.append(next(it))
            tracker.update(out[-1])
        return out, json.loads(json.dumps(stream.state_dict([tracker.summary()])))

    full, _ = batches(None, 9)
    head, state = batches(None, 4)
    assert state["partial"]  # stopped mid-block, shards read part-way
    tail, _ = batches(state, 5)
    for a, b in zip(full, head + tail):
        assert torch.equal(a.tensors["input_ids"], b.tensors["input_ids"]) and a.meta == b.meta
    seen = {(m["task"], m["record"]) for batch in full for row in batch.meta for m in row}
    assert {task for task, _ in seen} <= set(expected) and len(seen) > 10
    decoded = {tokenizer.decode(batch.tensors["input_ids"][0].tolist()) for batch in full}
    assert any("question" in text for text in decoded)  # the rows hold the parts' prompts


def test_cli_prepare_slices_a_flan_collection(collection, tmp_path, capsys):
    data_dir, expected = collection
    out = str(tmp_path / "shards")
    args = ["prepare", "flan2022", "--data-dir", str(data_dir), "--out", out]
    assert cli.main([*args, "--slice", "0/2"]) == 0
    assert "tasks wait for jobs of other slices" in capsys.readouterr().out
    assert cli.main([*args, "--slice", "1/2", "--workers", "2"]) == 0
    assert f"{len(expected)} tasks, {sum(map(len, expected.values()))} records" in capsys.readouterr().out
    assert cli.main([*args, "--slice", "2/2"]) == 2
    assert "slice 2/2: expected i/n with 0 <= i < n" in capsys.readouterr().err


def test_bad_jsonl_lines_name_file_and_line_or_are_skipped_and_counted(tmp_path):
    good = {"inputs": "q", "targets": "a", "task_name": "t", "task_source": "CoT", "template_type": "fs_opt"}
    lines = [json.dumps(good), "{not json", json.dumps({**good, "task_source": "Wikipedia"}), "", json.dumps(good)]
    (tmp_path / "export.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError, match=r"export.jsonl:2: bad JSON"):
        FlanCollection(tmp_path).mixture()
    mixture = FlanCollection(tmp_path, on_bad_record="skip").mixture()
    (task,) = mixture.tasks()
    assert task.name == "cot_fsopt/t" and task.num_examples() == 2 and task.bad_records == 2
    with gzip.open(tmp_path / "broken.jsonl.gz", "wb") as f:
        f.write(b"x" * 100)
    (tmp_path / "broken.jsonl.gz").write_bytes((tmp_path / "broken.jsonl.gz").read_bytes()[:20])
    with pytest.raises(TaskError, match="broken.jsonl.gz: not a readable gzip file"):
        FlanCollection(tmp_path, on_bad_record="skip").mixture()
