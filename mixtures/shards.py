"""Webdataset shards of tasks' raw records: writing (`prepare`), the manifest, random-access reading.

Layout of a shards directory::

    manifest.json                      every prepared task (assembled from the entries)
    <task>/entry.json                  a task's manifest entry, written last
    <task>/<split>-00000.tar ...       webdataset shards: one sample per record,
                                       key = record index (9 digits), field ``json``

A shard is written under a temporary name and renamed when complete, and a
task's ``entry.json`` is written (atomically) only after all of its shards are
in place, so a crash leaves no entry that names a half-written shard;
re-running skips tasks whose entry is present and current. Tar members carry a
fixed mtime, so the same records always give the same bytes and checksums.

Reading: :class:`ShardReader` gives random access to record ``i`` of a task's
split. It opens a shard on first use, checks its size and sha256 against the
manifest, indexes the tar members' data offsets, and then reads each record
with one ``pread``; a few file handles stay open in an LRU.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import webdataset
from tqdm import tqdm

from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.task import SPLITS, Task, TaskError

MANIFEST = "manifest.json"
ENTRY = "entry.json"
RECORDS_PER_SHARD = 1000
FORMAT_VERSION = 1


class ShardError(TaskError):
    """A shards directory that cannot be used as it is; the message names the file or task."""


def fingerprint(task: Task) -> str:
    """What a task's shards are made from: its name, field schema and record counts per split.

    Templates and formats are not in it: records are stored raw and rendered online.
    """
    spec = {"name": task.name, "fields": list(task.fields), "counts": {s: task.num_examples(s) for s in SPLITS}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def task_dir(name: str) -> str:
    """A directory name for a task: its name when that is path-safe, else a safe form plus a hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if safe != name or safe in (".", ".."):
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def _write_shard(path: Path, task: str, split: str, records: Sequence[dict], start: int) -> dict[str, Any]:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f, webdataset.TarWriter(f, mtime=0) as writer:
        for i, record in enumerate(records, start=start):
            try:
                data = json.dumps(record, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError) as err:
                raise ShardError(f"task '{task}': {split} record {i} is not JSON-serialisable: {err}") from None
            writer.write({"__key__": f"{i:09d}", "json": data})
    data = tmp.read_bytes()
    entry = {"file": path.name, "num_records": len(records), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    os.replace(tmp, path)
    return entry


def write_task(task: Task, root: Path, records_per_shard: int = RECORDS_PER_SHARD) -> dict[str, Any]:
    """Write one task's shards for every split, then its entry; returns the entry."""
    out = root / task_dir(task.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENTRY).unlink(missing_ok=True)  # the old entry must not outlive the shards it names
    entry: dict[str, Any] = {"name": task.name, "dir": out.name, "fingerprint": fingerprint(task), "splits": {}}
    for split in SPLITS:
        records = task.records(split)
        if split == "train" and len(records) == 0:
            raise ShardError(f"task '{task.name}' has no train records")
        shards = [
            _write_shard(out / f"{split}-{k:05d}.tar", task.name, split, records[start: start + records_per_shard], start)
            for k, start in enumerate(range(0, len(records), records_per_shard))
        ]
        entry["splits"][split] = {"num_records": len(records), "shards": shards}
    entry["bad_records"] = task.bad_records  # malformed source records the task's source skipped
    _write_json(out / ENTRY, entry)
    return entry


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


# Tasks handed to pool workers. Set in the parent just before a fork-started pool
# is created, so workers inherit the Task objects (whose record sources need not pickle).
_POOL_TASKS: dict[str, Task] = {}


def _write_pooled(job: tuple[str, str, int]) -> dict[str, Any]:
    name, root, records_per_shard = job
    return write_task(_POOL_TASKS[name], Path(root), records_per_shard)


def prepare(
    mixture: Mixture,
    out_dir: str | Path,
    workers: int = 1,
    records_per_shard: int = RECORDS_PER_SHARD,
    force: bool = False,
    progress: bool = True,
) -> "Manifest":
    """Write every task of ``mixture`` as shards under ``out_dir`` (tasks in parallel) and the manifest.

    Tasks whose entry is present with the current fingerprint and whose shard
    files are all present at their recorded sizes are skipped unless ``force``;
    their checksums are verified (a shard corrupted in place is an error naming it).
    """
    global _POOL_TASKS
    if workers < 1 or records_per_shard < 1:
        raise ShardError(f"workers and records per shard must be at least 1, got {workers} and {records_per_shard}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    todo = [t for t in mixture.tasks() if force or not _is_current(t, root)]
    jobs = [(t.name, str(root), records_per_shard) for t in todo]
    bar = tqdm(total=len(jobs), desc=f"prepare {mixture.name}", unit="task", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        _POOL_TASKS = {t.name: t for t in todo}
        try:
            with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
                for _ in pool.imap_unordered(_write_pooled, jobs):
                    bar.update()
        finally:
            _POOL_TASKS = {}
    else:
        for task in todo:
            write_task(task, root, records_per_shard)
            bar.update()
    bar.close()
    manifest = write_manifest(root)
    # A skipped task's shards are present at their sizes; one corrupted in place is an error, not a success.
    written = {t.name for t in todo}
    manifest.check([t for t in mixture.tasks() if t.name not in written], checksums=True)
    return manifest


def _read_entry(root: Path, name: str) -> dict[str, Any] | None:
    path = root / task_dir(name) / ENTRY
    if not path.is_file():
        return None
    try:
        return check_entry(json.loads(path.read_text()), str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, ShardError):
        return None  # a damaged entry means the task is prepared again


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _field(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ShardError(f"{where}: '{key}' is missing or malformed (got {value!r})")
    return value


def _plain_name(data: Any, key: str, where: str) -> str:
    """A file or directory name inside the shards directory: never a path that leads out of it."""
    name = _field(data, key, str, where)
    if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise ShardError(f"{where}: '{key}' {name!r} is not a plain file name inside the shards directory")
    return name


def check_entry(entry: Any, where: str) -> dict[str, Any]:
    """``entry`` if it is a task entry as :func:`write_task` writes it, else a :class:`ShardError` naming the key."""
    _field(entry, "name", str, where)
    _plain_name(entry, "dir", where)
    _field(entry, "fingerprint", str, where)
    _field(entry, "bad_records", int, where)
    splits = _field(entry, "splits", dict, where)
    for split in SPLITS:
        info = _field(splits, split, dict, f"{where}: splits")
        _field(info, "num_records", int, f"{where}: splits.{split}")
        for i, shard in enumerate(_field(info, "shards", list, f"{where}: splits.{split}")):
            at = f"{where}: splits.{split}.shards[{i}]"
            _plain_name(shard, "file", at)
            for key, kind in (("num_records", int), ("bytes", int), ("sha256", str)):
                _field(shard, key, kind, at)
    return entry


def _is_current(task: Task, root: Path) -> bool:
    """The task's entry is there, with its fingerprint, and names shards present at their sizes."""
    entry = _read_entry(root, task.name)
    if entry is None:
        return False
    try:
        Manifest(root, {task.name: entry}).check([task])
    except ShardError:
        return False
    return True


def write_manifest(root: str | Path) -> "Manifest":
    """Assemble ``manifest.json`` from every task entry under ``root``."""
    root = Path(root)
    tasks = {}
    for path in sorted(root.glob(f"*/{ENTRY}")):
        try:
            entry = check_entry(json.loads(path.read_text()), str(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ShardError(f"{path}: not a valid task entry: {err}") from None
        tasks[entry["name"]] = entry
    _write_json(root / MANIFEST, {"version": FORMAT_VERSION, "tasks": tasks})
    return Manifest.load(root)


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    num_records: int
    bytes: int
    sha256: str


class Manifest:
    """The index of a shards directory: per task and split, shard files, record counts and checksums."""

    def __init__(self, root: Path, tasks: dict[str, dict[str, Any]]):
        self.root = root
        self.tasks = tasks

    @staticmethod
    def load(root: str | Path) -> "Manifest":
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise ShardError(f"{path}: no manifest; run `flanforge prepare MIXTURE --out {root}`")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ShardError(f"{path}: not a valid manifest: {err}") from None
        version = data.get("version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise ShardError(f"{path}: manifest version {version!r}, expected {FORMAT_VERSION}")
        tasks = data.get("tasks")
        if not isinstance(tasks, dict):
            raise ShardError(f"{path}: 'tasks' must be a mapping of task entries")
        for name, entry in tasks.items():
            check_entry(entry, f"{path}: task '{name}'")
        return Manifest(root, tasks)

    def shards(self, task: str, split: str = "train") -> list[ShardInfo]:
        entry = self._entry(task)
        return [
            ShardInfo(self.root / entry["dir"] / s["file"], s["num_records"], s["bytes"], s["sha256"])
            for s in entry["splits"][split]["shards"]
        ]

    def num_records(self, task: str, split: str = "train") -> int:
        return self._entry(task)["splits"][split]["num_records"]

    def bad_records(self, task: str) -> int:
        """Malformed source records skipped when the task was prepared (``on_bad_record: skip``)."""
        return self._entry(task)["bad_records"]

    def _entry(self, task: str) -> dict[str, Any]:
        if task not in self.tasks:
            raise ShardError(f"task '{task}' is not in {self.root / MANIFEST}; run `flanforge prepare` for this mixture")
        return self.tasks[task]

    def check(self, tasks: Iterable[Task], checksums: bool = False) -> None:
        """Raise :class:`ShardError` naming the task or file unless every task's shards are usable.

        Checks: the task is in the manifest with its current fingerprint and has
        train records; every shard file exists at its recorded size (and, with
        ``checksums``, has its recorded sha256).
        """
        for task in tasks:
            entry = self._entry(task.name)
            if entry["fingerprint"] != fingerprint(task):
                raise ShardError(
                    f"task '{task.name}': shards in {self.root / entry['dir']} were prepared from another "
                    "definition of the task (fingerprint mismatch); run `flanforge prepare` again"
                )
            if self.num_records(task.name) == 0:
                raise ShardError(f"task '{task.name}' has no train records")
            for split in SPLITS:
                for shard in self.shards(task.name, split):
                    verify_shard(shard, checksums)


def verify_shard(shard: ShardInfo, checksum: bool = True) -> None:
    """Raise :class:`ShardError` unless the shard exists at its recorded size (and sha256)."""
    if checksum:
        read_shard(shard)
    elif not shard.path.is_file():
        raise ShardError(f"{shard.path}: shard is missing")
    elif shard.path.stat().st_size != shard.bytes:
        _size_error(shard, shard.path.stat().st_size)


def read_shard(shard: ShardInfo) -> bytes:
    """The shard's bytes, checked against the manifest's size and sha256."""
    try:
        data = shard.path.read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{shard.path}: shard is missing") from None
    if len(data) != shard.bytes:
        _size_error(shard, len(data))
    if hashlib.sha256(data).hexdigest() != shard.sha256:
        raise ShardError(f"{shard.path}: sha256 does not match the manifest (corrupted or rewritten)")
    return data


def _size_error(shard: ShardInfo, size: int) -> None:
    raise ShardError(f"{shard.path}: shard is {size} bytes, the manifest says {shard.bytes} (truncated or rewritten)")


def ensure_prepared(mixture: Mixture, out_dir: str | Path, workers: int = 1, progress: bool = False) -> Manifest:
    """Prepare what is missing or stale, then check every task's shards (checksums included).

    Called on rank 0 before training; an all-zero mixture, a task without
    records or a damaged shard is an error here, before the first step.
    """
    mixture.rates()  # raises when every rate is zero
    manifest = prepare(mixture, out_dir, workers=workers, progress=progress)
    manifest.check(mixture.tasks(), checksums=True)
    return manifest


class ShardReader:
    """Random access to records of prepared tasks; one per process (holds file handles)."""

    def __init__(self, manifest: Manifest, max_open: int = 64):
        self.manifest = manifest
        self.max_open = max_open
        self._files: OrderedDict[Path, int] = OrderedDict()  # path -> fd, least recently used first
        self._index: dict[Path, np.ndarray] = {}  # path -> (num_records, 2) data offset, size
        self._layout: dict[tuple[str, str], tuple[list[ShardInfo], np.ndarray]] = {}

    def record(self, task: str, index: int, split: str = "train") -> dict[str, Any]:
        shards, starts = self._shards(task, split)
        k = int(np.searchsorted(starts, index, side="right")) - 1
        shard = shards[k]
        fd = self._open(shard)
        offset, size = self._index[shard.path][index - starts[k]]
        data = os.pread(fd, int(size), int(offset))
        return json.loads(data)

    def _shards(self, task: str, split: str) -> tuple[list[ShardInfo], np.ndarray]:
        key = (task, split)
        if key not in self._layout:
            shards = self.manifest.shards(task, split)
            starts = np.cumsum([0] + [s.num_records for s in shards[:-1]])
            self._layout[key] = (shards, starts)
        return self._layout[key]

    def _open(self, shard: ShardInfo) -> int:
        fd = self._files.get(shard.path)
        if fd is not None:
            self._files.move_to_end(shard.path)
            return fd
        if shard.path not in self._index:
            self._index[shard.path] = _tar_index(shard, read_shard(shard))
        if len(self._files) >= self.max_open:
            os.close(self._files.popitem(last=False)[1])
        fd = self._files[shard.path] = os.open(shard.path, os.O_RDONLY)
        return fd

    def close(self) -> None:
        while self._files:
            os.close(self._files.popitem()[1])


_USTAR_MAGIC = np.frombuffer(b"ustar\x0000", dtype=np.uint8)
_OCTAL = 8 ** np.arange(10, -1, -1)


def _tar_index(shard: ShardInfo, data: bytes) -> np.ndarray:
    """(num_records, 2): data offset and size of each record's ``json`` member, in key order.

    Reads the ustar headers of ``data`` with numpy instead of ``tarfile``, whose
    per-member overhead made opening the ~2K shards one ``builtin`` block
    touches take a minute. Sound for a shard whose sha256 matched: prepare
    wrote it as ustar members in key order, and a header is the only 512-byte
    block with the ustar magic at byte 257 (JSON text holds no NUL byte).
    """
    if len(data) % 512:
        raise ShardError(f"{shard.path}: not a tar file (its size is not a multiple of 512 bytes)")
    blocks = np.frombuffer(data, dtype=np.uint8).reshape(-1, 512)
    headers = np.flatnonzero((blocks[:, 257:265] == _USTAR_MAGIC).all(axis=1))
    digits = blocks[headers, 124:135].astype(np.int64) - ord("0")  # size: 11 octal digits
    if (digits < 0).any() or (digits > 7).any() or not (blocks[headers, 156] == ord("0")).all():
        raise ShardError(f"{shard.path}: not a shard of regular ustar members as prepare writes them")
    rows = np.stack([(headers + 1) * 512, digits @ _OCTAL], axis=1)
    if len(rows) != shard.num_records:
        raise ShardError(f"{shard.path}: holds {len(rows)} records, the manifest says {shard.num_records}")
    return rows
