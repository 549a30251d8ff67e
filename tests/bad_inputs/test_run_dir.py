"""Run directories and shards directories that are damaged, shared or hostile, and prepare options.

Each case builds its small directory here and asserts the exact outcome.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flanforge.launcher.training import checkpoint

from flanforge.launcher.training import runlock
from flanforge.launcher.training.rundir import RunDir
from flanforge.errors import UserError
from flanforge.mixtures import registry
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.streaming.shards import Manifest, ShardError, prepare
from flanforge.mixtures.task import Task, TaskError, Template

HOLD_LOCK = "import sys, time; from flanforge.launcher.training import runlock; from flanforge.launcher.training.rundir import RunDir; runlock.acquire(RunDir(sys.argv[1])); print('held', flush=True); time.sleep(600)"


def hold_lock(output_dir):
    """A process that holds the run's lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_on_a_directory_is_refused_naming_the_holder(tmp_path):
    proc = hold_lock(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"locked by another run \(pid {proc.pid} on {socket.gethostname()} since 20"):
            runlock.acquire(RunDir(tmp_path))
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_run_does_not_block_a_restart(tmp_path):
    proc = hold_lock(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert f"pid {proc.pid} " in runlock.holder(RunDir(tmp_path))  # the stale text is still there
    runlock.acquire(RunDir(tmp_path))
    try:
        assert runlock.holder(RunDir(tmp_path)).startswith(f"pid {os.getpid()} on ")
    finally:
        runlock.release(RunDir(tmp_path))


def test_lock_held_by_this_slurm_jobs_batch_script_is_ours(tmp_path, monkeypatch):
    """slurm/common.sh holds the same lock for the job; a requeued job's train runs under it."""
    script = (f"exec 9>>{tmp_path}/.lock; flock -n 9; echo \"job 77 on $(hostname -s) pid $$ since now\" >{tmp_path}/.lock; "
              "echo held; sleep 600")
    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        monkeypatch.setenv("SLURM_JOB_ID", "78")
        with pytest.raises(UserError, match=r"locked by another run \(job 77 on "):
            runlock.acquire(RunDir(tmp_path))
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        runlock.acquire(RunDir(tmp_path))  # no error: the batch script of this job holds it
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("text, problem", [
    ("../../../etc", "not a checkpoint tag"),
    ("/tmp/elsewhere", "not a checkpoint tag"),
    ("step_00000004", "is missing or incomplete"),
])
def test_latest_never_leads_outside_the_run(tmp_path, text, problem):
    run_dir = RunDir(tmp_path)
    run_dir.checkpoints.mkdir(parents=True)
    run_dir.latest.write_text(text)
    with pytest.raises(UserError, match=problem):
        run_dir.latest_tag()


@pytest.mark.parametrize("content", ["", '{"step": 4', '{"step": "4", "world_size": 2}', "[1, 2]"])
def test_truncated_or_malformed_trainer_json_is_one_line(tmp_path, content):
    run_dir, tag = RunDir(tmp_path), RunDir.tag_for(4)
    run_dir.checkpoint(tag).mkdir(parents=True)
    run_dir.trainer_state(tag).write_text(content)
    run_dir.latest.write_text(tag)
    with pytest.raises(UserError, match=r"step_00000004: checkpoint cannot be read \(.*\); it is truncated or damaged"):
        checkpoint.trainer_state(run_dir, tag)


def small_mixture(n=5):
    rows = [{"q": f"question {i}", "a": str(i)} for i in range(n)]
    task = Task("tiny", ("q", "a"), (Template("t", "{{ q }}", "{{ a }}"),), source=lambda split: rows if split == "train" else [])
    return Mixture("tinymix", [(task, Rate.fixed(1.0))])


def test_shard_corrupted_at_the_same_size_is_an_error_in_prepare(tmp_path):
    mixture = small_mixture()
    manifest = prepare(mixture, tmp_path, progress=False)
    shard = manifest.shards("tiny")[0]
    data = bytearray(shard.path.read_bytes())
    data[600] ^= 0xFF  # inside the first record: same size, other bytes
    shard.path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"tiny/train-00000\.tar: member 00000_000000000\.jsonl does not match its checksum"):
        prepare(mixture, tmp_path, progress=False)  # not skipped as complete
    prepare(mixture, tmp_path, force=True, progress=False).check(mixture.tasks(), checksums=True)


@pytest.mark.parametrize("workers, per_shard", [(1, 0), (1, -5), (0, 10)])
def test_prepare_options_that_would_write_nothing_are_errors(tmp_path, workers, per_shard):
    with pytest.raises(ShardError, match="must be at least 1"):
        prepare(small_mixture(), tmp_path, workers=workers, records_per_shard=per_shard, progress=False)
    assert not (tmp_path / "manifest.json").exists()


def _first_file(data):
    return next(iter(data["files"]))


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d["files"].update({"../outside.tar": [1, "x"]}),
     r"files: a shard path must be a plain relative path inside the shards directory, got '\.\./outside\.tar'"),
    (lambda d: d["tasks"]["tiny"]["splits"]["train"]["pieces"][0].__setitem__(0, "/etc/passwd"),
     r"task 'tiny': splits\.train: a shard path must be a plain relative path"),
    (lambda d: d["tasks"]["tiny"]["splits"]["train"]["pieces"][0].__setitem__(0, "tiny/other.tar"),
     r"task 'tiny': splits\.train: a piece names a file the manifest does not list"),
    (lambda d: d["tasks"]["tiny"]["splits"].pop("validation"), r"task 'tiny': splits\.validation: expected \{num_records"),
    (lambda d: d["tasks"]["tiny"]["splits"]["train"].update(num_records="5"), r"task 'tiny': splits\.train: expected"),
    (lambda d: d["tasks"]["tiny"]["splits"]["train"].update(num_records=9), r"task 'tiny': splits\.train: pieces hold 5 records, but num_records is, got '9'"),
    (lambda d: d["tasks"]["tiny"].update(bad_records=-1), r"task 'tiny': 'bad_records' must be a count"),
    (lambda d: d["files"].update({_first_file(d): [12]}), r"files\[.*\]: expected \[size, \[\[member, bytes, records, checksum\]"),
])
def test_malformed_manifest_is_an_error_naming_the_key(tmp_path, edit, problem):
    prepare(small_mixture(), tmp_path, progress=False)
    data = json.loads((tmp_path / "manifest.json").read_text())
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ShardError, match=rf"manifest\.json: {problem}"):
        Manifest.load(tmp_path)


def test_manifest_without_tasks_mapping(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 3, "tasks": [1], "files": {}}))
    with pytest.raises(ShardError, match="'tasks' and 'files' must be mappings"):
        Manifest.load(tmp_path)


def test_prepare_cli_reads_yaml_mixtures(tmp_path, capsys):
    from flanforge.launcher.cli import main

    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"q": f"q{i}", "a": str(i)}) + "\n" for i in range(7)))
    (tmp_path / "task.yaml").write_text(
        "task: yamltask\nsource: {path: rows.jsonl}\ntemplates:\n  - {id: t, input: '{{ q }}', target: '{{ a }}'}\n")
    registry.reset()
    assert main(["prepare", str(tmp_path / "task.yaml"), "--out", str(tmp_path / "shards")]) == 0
    assert "1 tasks, 7 records" in capsys.readouterr().out
    assert Manifest.load(tmp_path / "shards").num_records("yamltask") == 7
    assert main(["prepare", str(tmp_path / "task.yaml"), "--out", str(tmp_path / "x"), "--records-per-shard", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "flanforge prepare: error: --records-per-shard must be at least 1, got 0")


def test_preflight_names_a_task_with_no_usable_records(tmp_path):
    from flanforge.launcher.training.preflight import check_mixture

    (tmp_path / "task.yaml").write_text(
        "task: hollow\nsource: {path: %s, on_bad_record: skip}\ntemplates:\n  - {id: t, input: '{{ question }}', target: '{{ answer }}'}\n"
        % (Path(__file__).parent / "data" / "all_bad.jsonl"))
    registry.reset()
    with pytest.raises(TaskError, match=r"mixture 'hollow': task 'hollow' has no usable train records \(3 bad records skipped\)"):
        check_mixture(registry.load_mixture(tmp_path / "task.yaml"))


@pytest.mark.parametrize("name, content, problem", [
    ("spiece.model", b"this is a README, not a model", r"model\.tokenizer_path: .*spiece\.model: not a SentencePiece model"),
    ("tokenizer.json", b'{"not": "a tokenizer"}', r"model\.tokenizer_path: .*tokenizer\.json: not a tokenizer\.json"),
    ("empty_dir", None, r"model\.tokenizer_path: tokenizer not found: .*empty_dir holds none of"),
])
def test_tokenizer_path_that_is_not_a_tokenizer(tmp_path, name, content, problem):
    from flanforge.model.config import ModelConfig
    from flanforge.model.load import load_configured_tokenizer

    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=problem):
        load_configured_tokenizer(ModelConfig(tokenizer_path=str(path)))
