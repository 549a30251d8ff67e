"""``flanforge prepare`` under real interruptions and real limits, its ``--out`` check and ``--verify``.

The interrupted runs are ``flanforge`` processes: a real SIGINT or SIGTERM sent once the
first shard's temporary file exists (40 shards to write: the signal lands mid-work), a
real ``RLIMIT_FSIZE`` set in the child (``ulimit -f``). Each must end with one line and
its exit status, leave nothing partial, and a re-run must equal an uninterrupted run
byte for byte.
"""

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flanforge.launcher.cli import main

FLANFORGE = str(Path(sys.executable).with_name("flanforge"))
RECORDS = 40_000


@pytest.fixture(scope="module")
def task_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    with open(root / "sums.jsonl", "w") as fh:
        for i in range(RECORDS):
            fh.write(json.dumps({"question": f"what is {i} plus {i}?", "answer": str(2 * i)}) + "\n")
    (root / "sums.yaml").write_text('task: sums\nsource: {path: sums.jsonl}\n'
                                    'templates:\n  - {id: t, input: "{{ question }}", target: "{{ answer }}"}\n')
    return root / "sums.yaml"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(task_yaml, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "shards"
    assert main(["prepare", str(task_yaml), "--out", str(out)]) == 0
    return tree(out)


def prepare(task_yaml, out, fsize_limit=None):
    """``flanforge prepare`` as a child process, with SIGINT as an interactive shell leaves it (a test run
    started in the background inherits it ignored, and Python then never raises KeyboardInterrupt) and a
    real RLIMIT_FSIZE if given."""
    def setup():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
    return subprocess.Popen([FLANFORGE, "prepare", str(task_yaml), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=setup)


def assert_nothing_partial(out: Path):
    """No manifest, no entry, no shard, no temporary: the task's (empty) folder at most."""
    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] in ([], ["sums"])


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_prepare_leaves_nothing_partial_and_a_rerun_equals_an_uninterrupted_one(
        task_yaml, uninterrupted, tmp_path, sig, status):
    out = tmp_path / "shards"
    proc = prepare(task_yaml, out)
    deadline = time.monotonic() + 60
    while not list(out.glob("sums/.*.tmp")) and time.monotonic() < deadline:  # the first shard being written
        time.sleep(0.001)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert err.splitlines() == [
        f"flanforge prepare: interrupted ({sig.name}); nothing partial left, re-run to continue"]
    assert_nothing_partial(out)
    assert main(["prepare", str(task_yaml), "--out", str(out)]) == 0
    assert tree(out) == uninterrupted


def test_file_size_limit_is_one_line_naming_the_shard_and_nothing_partial(task_yaml, uninterrupted, tmp_path):
    out = tmp_path / "shards"
    limit = 50_000  # below one shard (1000 records, about 75 kB)
    proc = prepare(task_yaml, out, fsize_limit=limit)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"flanforge prepare: error: {out}/sums/train-00000.tar: file size limit exceeded")
    needed = int(err.split("it needed at least ")[1].split()[0])
    assert needed > limit
    assert_nothing_partial(out)
    assert main(["prepare", str(task_yaml), "--out", str(out)]) == 0
    assert tree(out) == uninterrupted


def test_out_that_is_not_a_shards_directory_is_refused_before_work(task_yaml, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert main(["prepare", str(task_yaml), "--out", str(file)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"flanforge prepare: error: --out {file}: exists and is not a directory; "
        "give a new, empty or prepared directory"]
    assert file.read_text() == "mine"
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "src").mkdir()
    (tmp_path / "project" / "src" / "main.py").write_text("")
    assert main(["prepare", str(task_yaml), "--out", str(tmp_path / "project")]) == 2
    assert "not a shards directory (it holds 'src')" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "project").rglob("*")] == ["src", "main.py"]
    inside_a_file = file / "shards"  # nothing can be created there
    assert main(["prepare", str(task_yaml), "--out", str(inside_a_file)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"flanforge prepare: error: --out {inside_a_file}: {file} is not a directory"]


def test_verify_lists_every_bad_member_then_fails(task_yaml, uninterrupted, tmp_path, capsys):
    out = tmp_path / "shards"
    for rel, data in uninterrupted.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    assert main(["prepare", "--verify", str(out)]) == 0
    assert "every shard member matches its checksum" in capsys.readouterr().out
    members = json.loads(uninterrupted["manifest.json"])["files"]["sums/train-00001.tar"][1]
    shard = out / "sums/train-00001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01  # in the first member's records; same size
    data[members[0][1] + members[1][1] + 700] ^= 0x01  # in the third member's
    shard.write_bytes(bytes(data))
    (out / "sums/train-00003.tar").unlink()
    assert main(["prepare", "--verify", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{shard}: member {members[0][0]} does not match its checksum",
        f"{shard}: member {members[2][0]} does not match its checksum",
        f"{out}/sums/train-00003.tar: shard is missing"]
    assert captured.err.splitlines() == [
        f"flanforge prepare: error: --verify {out}: 3 problem(s), listed above; prepare again with --force "
        "(or train with mixture.on_bad_record: skip to skip the bad members' records)"]
