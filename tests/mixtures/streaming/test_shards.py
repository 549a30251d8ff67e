"""Shards: prepare writes webdataset tars and a manifest; random access; crash safety; bad input."""

import io
import json
import tarfile

import pytest
import webdataset

from flanforge.launcher import cli
from flanforge.mixtures.streaming import shards
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.registry import get_mixture
from flanforge.mixtures.streaming.shards import Manifest, ShardError, ShardReader, ensure_prepared, prepare
from flanforge.mixtures.task import Task, TaskError, Template

SIZES = {"train": 25, "exemplars": 3, "validation": 4}


def make_task(name, sizes=SIZES):
    def source(split):
        return [{"q": f"{name} {split} q{i} é", "answer": str(i), "n": i} for i in range(sizes[split])]

    return Task(name, ("q", "answer", "n"), (Template("t0", "{{ q }}"),), source)


def mixture(*tasks, weights=None):
    weights = weights or [1.0] * len(tasks)
    return Mixture("m", [(t, Rate.fixed(w)) for t, w in zip(tasks, weights)])


@pytest.fixture
def prepared(tmp_path):
    mix = mixture(make_task("alpha"), make_task("beta/odd name"))
    manifest = prepare(mix, tmp_path, records_per_shard=10, progress=False)
    return mix, manifest


def test_shards_round_trip_through_webdataset_reader(prepared):
    mix, manifest = prepared
    for task in mix.tasks():
        for split in shards.SPLITS:
            urls = [str(s.path) for s in manifest.shards(task.name, split)]
            assert len(urls) == -(-SIZES[split] // 10)
            samples = list(webdataset.WebDataset(urls, shardshuffle=False))
            # one sample per chunk of records (at most 10 here: one shard's worth), a JSON object a line
            assert [s["__key__"] for s in samples] == ["00000_000000000"] * len(urls)
            records = [json.loads(line) for s in samples for line in s["jsonl"].splitlines()]
            assert records == list(task.records(split))


def test_manifest_counts_checksums_and_reader_random_access(prepared):
    mix, manifest = prepared
    assert manifest.num_records("alpha", "train") == 25
    assert [s.num_records for s in manifest.shards("alpha")] == [10, 10, 5]
    for shard in manifest.shards("alpha"):  # every member listed with its xxh3-64 checksum; they tile the shard
        assert all(len(digest) == 16 for _, _, _, digest in shard.members)
        assert sum(size for _, size, _, _ in shard.members) + 1024 == shard.bytes == shard.path.stat().st_size
    reader = ShardReader(manifest, max_open=2)  # fewer handles than shards: the LRU reopens
    records = mix.tasks()[1].records("train")
    for i in (24, 0, 13, 7, 24, 10):
        assert reader.record("beta/odd name", i) == records[i]
    assert reader.record("alpha", 2, split="validation") == mix.tasks()[0].records("validation")[2]


def test_rerun_skips_complete_tasks_and_parallel_output_is_identical(tmp_path, monkeypatch):
    mix = mixture(make_task("alpha"), make_task("beta"), make_task("gamma"))
    serial = prepare(mix, tmp_path / "serial", records_per_shard=10, progress=False)
    parallel = prepare(mix, tmp_path / "parallel", workers=2, records_per_shard=10, progress=False)
    for name in ("alpha", "beta", "gamma"):
        assert [s.members for s in serial.shards(name)] == [s.members for s in parallel.shards(name)]

    written = []
    monkeypatch.setattr(shards, "write_task", lambda task, root, n: written.append(task.name) or 0)
    prepare(mix, tmp_path / "serial", records_per_shard=10, progress=False)
    assert written == []
    (tmp_path / "serial" / "beta" / "train-00001.tar").unlink()  # damaged: prepared again
    prepare(mix, tmp_path / "serial", records_per_shard=10, progress=False)
    assert written == ["beta"]


def test_a_crash_mid_task_leaves_no_manifest_entry_and_a_rerun_completes(tmp_path, monkeypatch):
    mix = mixture(make_task("alpha"), make_task("beta"))
    write_records = shards.write_records

    def crash_in_beta_validation(path, lines):
        if path.parent.name == "beta" and path.name.startswith("validation"):
            path.with_name(f".{path.name}.0123abcd.tmp").write_bytes(b"half a shard")  # as if SIGKILLed
            raise KeyboardInterrupt("killed mid-shard")
        return write_records(path, lines)

    monkeypatch.setattr(shards, "write_records", crash_in_beta_validation)
    with pytest.raises(KeyboardInterrupt):
        prepare(mix, tmp_path, records_per_shard=10, progress=False)
    assert (tmp_path / "beta" / "train-00000.tar").exists()  # written before the crash ...
    assert not (tmp_path / "beta" / shards.ENTRY).exists()  # ... but never listed
    assert sorted(shards.write_manifest(tmp_path).tasks) == ["alpha"]
    monkeypatch.setattr(shards, "write_records", write_records)
    manifest = prepare(mix, tmp_path, records_per_shard=10, progress=False)
    manifest.check(mix.tasks(), checksums=True)
    assert sorted(manifest.tasks) == ["alpha", "beta"]
    assert not list(tmp_path.rglob("*.tmp"))  # the re-run removed what the killed one left


def test_missing_shard_is_named(prepared):
    mix, manifest = prepared
    shard = manifest.shards("alpha")[1]
    shard.path.unlink()
    with pytest.raises(ShardError, match=f"{shard.path}: shard is missing"):
        manifest.check(mix.tasks())
    with pytest.raises(ShardError, match="missing"):
        ShardReader(manifest).record("alpha", 12)


def test_truncated_shard_is_named(prepared):
    mix, manifest = prepared
    shard = manifest.shards("alpha")[0]
    shard.path.write_bytes(shard.path.read_bytes()[:1000])
    with pytest.raises(ShardError, match=f"{shard.path}: shard is 1000 bytes.*truncated"):
        manifest.check(mix.tasks())


def test_checksum_mismatch_is_named_on_check_and_on_first_read(prepared):
    mix, manifest = prepared
    shard = manifest.shards("alpha")[0]
    data = bytearray(shard.path.read_bytes())
    data[600] ^= 0xFF  # same size, one byte flipped inside the first record
    shard.path.write_bytes(bytes(data))
    manifest.check(mix.tasks())  # sizes alone look fine
    named = f"{shard.path}: member 00000_000000000.jsonl does not match its checksum"
    with pytest.raises(ShardError, match=named):
        manifest.check(mix.tasks(), checksums=True)
    with pytest.raises(ShardError, match=named):
        ShardReader(manifest).record("alpha", 0)


def test_a_tar_that_is_not_a_prepared_shard_is_named(prepared):
    _, manifest = prepared
    shard = manifest.shards("alpha")[0]
    with tarfile.open(shard.path, "w") as tar:  # rewritten by hand, manifest updated to match
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    data = shard.path.read_bytes()
    doc = json.loads((manifest.root / shards.MANIFEST).read_text())
    doc["files"]["alpha/train-00000.tar"] = [len(data), [["notes.txt", 1024, 1, "0" * 16]]]
    (manifest.root / shards.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ShardError, match=r"files\['alpha/train-00000.tar'\]: expected \[size, \[\[member"):
        Manifest.load(manifest.root)


def test_task_missing_from_manifest_or_changed_since_is_named(prepared, tmp_path):
    _, manifest = prepared
    with pytest.raises(ShardError, match="task 'gamma' is not in .*manifest.json"):
        manifest.check([make_task("gamma")])
    grown = make_task("alpha", sizes={**SIZES, "train": 26})
    with pytest.raises(ShardError, match="task 'alpha'.*fingerprint mismatch"):
        manifest.check([grown])


def test_manifest_damaged_or_absent(tmp_path):
    with pytest.raises(ShardError, match="no manifest"):
        Manifest.load(tmp_path)
    (tmp_path / shards.MANIFEST).write_text("{not json")
    with pytest.raises(ShardError, match="not a valid manifest"):
        Manifest.load(tmp_path)
    (tmp_path / shards.MANIFEST).write_text(json.dumps({"version": 99, "tasks": {}}))
    with pytest.raises(ShardError, match="version 99"):
        Manifest.load(tmp_path)


def test_task_with_no_records_is_named(tmp_path):
    empty = make_task("empty", sizes={**SIZES, "train": 0})
    with pytest.raises(ShardError, match="task 'empty' has no train records"):
        prepare(mixture(make_task("alpha"), empty), tmp_path, progress=False)


def test_all_zero_rates_fail_before_anything_is_written(tmp_path):
    mix = mixture(make_task("alpha"), make_task("beta"), weights=[0.0, 0.0])
    with pytest.raises(TaskError, match="every rate is zero"):
        ensure_prepared(mix, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ensure_prepared_prepares_then_verifies_checksums(tmp_path):
    mix = mixture(make_task("alpha"))
    manifest = ensure_prepared(mix, tmp_path)
    shard = manifest.shards("alpha")[0]
    data = bytearray(shard.path.read_bytes())
    data[600] ^= 0xFF
    shard.path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="member 00000_000000000.jsonl does not match its checksum"):
        ensure_prepared(mix, tmp_path)


def test_cli_prepare_demo(tmp_path, capsys):
    assert cli.main(["prepare", "demo", "--out", str(tmp_path), "--workers", "2"]) == 0
    names = sorted(t.name for t in get_mixture("demo").tasks())
    assert f"{len(names)} tasks" in capsys.readouterr().out
    manifest = Manifest.load(tmp_path)
    assert sorted(manifest.tasks) == names and all(manifest.num_records(t) > 0 for t in names)


def test_large_shard_sets_are_hashed_when_first_read_not_up_front(tmp_path, monkeypatch):
    mix = mixture(make_task("alpha"))
    manifest = ensure_prepared(mix, tmp_path)
    assert manifest.shard_bytes(mix.tasks()) == sum(s.bytes for split in shards.SPLITS for s in manifest.shards("alpha", split))
    shard = manifest.shards("alpha")[0]
    data = bytearray(shard.path.read_bytes())
    data[600] ^= 0xFF
    shard.path.write_bytes(bytes(data))
    monkeypatch.setattr(shards, "CHECKSUM_ALL_BYTES", 1000)  # below this mixture's shards
    manifest = ensure_prepared(mix, tmp_path)  # sizes only
    with pytest.raises(ShardError, match="does not match its checksum"):
        ShardReader(manifest).record("alpha", 0)


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # same size, another byte
    path.write_bytes(bytes(data))


def test_a_bad_member_is_an_error_or_under_skip_only_its_records_are_skipped(tmp_path):
    mix = mixture(make_task("alpha", sizes={**SIZES, "train": 600}))  # one shard, members of 256, 256, 88 records
    manifest = ensure_prepared(mix, tmp_path)
    shard = manifest.shards("alpha")[0]
    assert [(name, n) for name, _, n, _ in shard.members] == [
        ("00000_000000000.jsonl", 256), ("00000_000000256.jsonl", 256), ("00000_000000512.jsonl", 88)]
    flip(shard.path, shard.members[0][1] + 700)  # inside the second member's records
    with pytest.raises(ShardError, match=f"{shard.path}: member 00000_000000256.jsonl does not match its checksum"):
        ShardReader(manifest).record("alpha", 0)
    with pytest.raises(ShardError, match="member 00000_000000256.jsonl"):
        ensure_prepared(mix, tmp_path)
    ensure_prepared(mix, tmp_path, on_bad_member="skip")  # the reader skips and counts instead
    reader, records = ShardReader(manifest, on_bad_member="skip"), mix.tasks()[0].records("train")
    read = [reader.record("alpha", i) for i in range(600)]
    assert [i for i, r in enumerate(read) if r is None] == list(range(256, 512))
    assert [r for r in read if r is not None] == records[:256] + records[512:]


def test_an_older_format_is_refused_naming_it_and_prepare_rebuilds_it(tmp_path):
    mix = mixture(make_task("alpha"))
    prepare(mix, tmp_path, progress=False)
    entry = json.loads((tmp_path / "alpha" / shards.ENTRY).read_text())
    size, _ = entry["files"]["alpha/train-00000.tar"]
    entry.update(format=2, files={f: [n, "0" * 64] for f, (n, _) in entry["files"].items()})  # one sha256 a shard
    (tmp_path / "alpha" / shards.ENTRY).write_text(json.dumps(entry))
    (tmp_path / shards.MANIFEST).write_text(json.dumps({"version": 2, "tasks": {"alpha": entry}, "files": entry["files"]}))
    with pytest.raises(ShardError, match=r"old format 2 \(no checksum per member\); rebuild them in format 3 with "
                                         r"`flanforge prepare MIXTURE --out"):
        Manifest.load(tmp_path)
    prepare(mix, tmp_path, progress=False).check(mix.tasks(), checksums=True)
    assert Manifest.load(tmp_path).shards("alpha")[0].members
