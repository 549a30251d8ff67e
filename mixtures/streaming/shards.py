"""Webdataset shards of tasks' raw records: writing (`prepare`), the manifest, random-access reading.

Layout of a shards directory (format 3)::

    manifest.json                        every prepared task (assembled from the entries)
    <task>/entry.json                    a task's manifest entry, written last
    <task>/<split>-00000.tar ...         webdataset shards of chunked JSON-line records (``chunks.py``)
    collections/<name>/...               Flan-collection parts (``sources/flan_collection.py``)

A task's records are a list of *pieces*: ``[file, slot, records]``, the
records of stream ``slot`` in shard ``file`` (relative to the directory). A
file-backed task has one piece per shard of its own; a Flan-collection part
is written once, into shards shared by the tasks it holds. A task whose
source generates its records on demand (the built-in suite: ``random_access``
sources) is not materialised: its pieces have no file and the reader asks the
task for the record, so ``prepare builtin`` only writes entries.

A shard is written under a temporary name and renamed when complete, and a
task's ``entry.json`` (a collection part's marker) is written atomically only
after its shards are in place, so a crash leaves nothing that names a
half-written shard; re-running skips what is present and current. The work
is a list of jobs (tasks and collection parts) that ``part=(i, n)`` slices
across processes or nodes (``flanforge prepare --slice i/n``). A directory
written by an older flanforge (format 1: one tar member per record; format 2:
one sha256 per shard, no member checksums) is rebuilt by ``prepare`` and refused,
with that advice, by the reader: never read unverified.

Reading: :class:`ShardReader` gives random access to record ``i`` of a task's
split. It opens a shard on first use, checks its size and every member's
checksum against the manifest (:func:`~chunks.bad_members`: a mismatch is an
error naming shard and member, or under ``on_bad_record: skip`` the member's
records read as None, for the stream to skip and count), indexes every record's
byte range, and then reads each record with one ``pread``; a few file handles
stay open in an LRU. :func:`verify_directory` checks a whole directory
(``flanforge prepare --verify DIR``).

A shards directory may be a URL (``s3://bucket/prefix``): the manifest's
``store`` (``mixtures/storage/``) then downloads each shard into the node's
bounded cache before the reader opens it, and the stream fetches the shards of
its next blocks ahead (:meth:`ShardReader.prefetch`). ``prepare`` to a URL
stages the set locally and uploads it, the manifest last.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
from tqdm import tqdm

from flanforge.mixtures.streaming.chunks import (
    ShardError, ShardInfo, bad_members, chunk_index, corrupt, encode, file_entry, fingerprint_of, read_json,
    read_shard, verify_shard, write_json, write_records,
)
from flanforge.mixtures.streaming.manifest_check import check_manifest
from flanforge.mixtures.storage import LocalStore, RemoteStore, StorageConfig, is_remote, open_store
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.sources import flan_collection
from flanforge.mixtures.task import SPLITS, Task

__all__ = ["Manifest", "ShardError", "ShardInfo", "ShardReader", "check_out", "ensure_prepared", "prepare",
           "verify_directory", "write_manifest"]

MANIFEST = "manifest.json"
ENTRY = "entry.json"
RECORDS_PER_SHARD = 1000
FORMAT_VERSION = 3
CHECKSUM_ALL_BYTES = 4 << 30
OLD_FORMATS = {1: "one tar member per record", 2: "no checksum per member"}


def fingerprint(task: Task) -> str:
    """What a task's shards are made from: its name, field schema and record counts per split.

    Templates and formats are not in it: records are stored raw and rendered online.
    """
    return fingerprint_of(task.name, task.fields, {s: task.num_examples(s) for s in SPLITS})


def task_dir(name: str) -> str:
    """A directory name for a task: its name when that is path-safe, else a safe form plus a hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if safe != name or safe in (".", ".."):
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def generated(task: Task) -> bool:
    """Records made on demand, deterministically and cheaply (no shards needed)."""
    return bool(getattr(task.source, "random_access", False))


def write_task(task: Task, root: Path, records_per_shard: int = RECORDS_PER_SHARD) -> int:
    """Write one task's shards for every split, then its entry; returns the records written."""
    out = root / task_dir(task.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENTRY).unlink(missing_ok=True)  # the old entry must not outlive the shards it names
    for stale in out.glob(".*.tmp"):  # what a killed run of this job left (the job owns its folder)
        stale.unlink()
    virtual = generated(task)
    entry: dict[str, Any] = {"name": task.name, "dir": out.name, "fingerprint": fingerprint(task),
                             "format": FORMAT_VERSION, "splits": {}, "files": {}}
    written = 0
    for split in SPLITS:
        records = task.records(split)
        if split == "train" and len(records) == 0:
            raise ShardError(f"task '{task.name}' has no train records")
        pieces = []
        for k, start in enumerate(range(0, len(records), records_per_shard)):
            stop = min(start + records_per_shard, len(records))
            if virtual:
                pieces.append([None, 0, stop - start])
                continue
            lines = (encode(records[i], f"task '{task.name}': {split} record {i}") for i in range(start, stop))
            shard = write_records(out / f"{split}-{k:05d}.tar", lines)
            rel = f"{out.name}/{shard['file']}"
            entry["files"][rel] = file_entry(shard)
            pieces.append([rel, 0, shard["num_records"]])
            written += shard["num_records"]
        entry["splits"][split] = {"num_records": len(records), "pieces": pieces}
    entry["bad_records"] = task.bad_records  # malformed source records the task's source skipped
    write_json(out / ENTRY, entry)
    return written


# ---- prepare: a list of jobs, sliced across processes and nodes ----------------------

Job = Callable[[], int]
"""Writes one task or collection part; returns the records it wrote."""

# Jobs handed to pool workers. Set in the parent just before a fork-started pool
# is created, so workers inherit them (tasks' record sources need not pickle).
_POOL_JOBS: list[Job] = []


def _run_pooled(i: int) -> int:
    return _POOL_JOBS[i]()


def _run(jobs: list[Job], workers: int) -> Iterator[int]:
    """Run the jobs (in ``workers`` forked processes), yielding each one's records as it finishes.

    A worker that dies (killed, out of memory) is an error, not a hang: what
    its job wrote was never published, and running prepare again redoes it.
    """
    global _POOL_JOBS
    if workers <= 1 or len(jobs) <= 1:
        yield from (job() for job in jobs)
        return
    _POOL_JOBS = jobs
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("fork"))
    try:
        for future in as_completed([pool.submit(_run_pooled, i) for i in range(len(jobs))]):
            yield future.result()
    except BrokenProcessPool:
        raise ShardError("a prepare worker died (killed, or out of memory) before its job finished; nothing "
                         "it wrote is published; run prepare again to finish the remaining jobs") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _POOL_JOBS = []


def plan(mixture: Mixture, root: Path, records_per_shard: int, force: bool) -> list[tuple[str, bool, Job]]:
    """Every job of the mixture, in a fixed order: ``(name, done, job)``."""
    jobs: list[tuple[str, bool, Job]] = []
    collections: dict[str, flan_collection.FlanCollection] = {}
    for task in mixture.tasks():
        if isinstance(task.source, flan_collection.CollectionSource):
            collections.setdefault(task.source.collection.key, task.source.collection)
        else:
            done = not force and _is_current(task, root)
            jobs.append((f"task {task.name}", done, partial(write_task, task, root, records_per_shard)))
    for collection in collections.values():
        jobs += collection.jobs(root, force)
    return jobs


def prepare(
    mixture: Mixture,
    out_dir: str | Path,
    workers: int = 1,
    records_per_shard: int = RECORDS_PER_SHARD,
    force: bool = False,
    progress: bool = True,
    part: tuple[int, int] = (0, 1),
    on_bad_member: str = "error",
    storage: StorageConfig | None = None,
) -> "Manifest":
    """Write every task of ``mixture`` as shards under ``out_dir`` (jobs in parallel) and the manifest.

    ``out_dir`` may be a URL (``storage``: its endpoint and cache directory): :func:`prepare_remote`.

    ``part=(i, n)`` does only every ``n``-th job starting at ``i`` (the job
    list is fixed, so ``n`` processes or nodes share the work without
    overlap). Jobs that are done (entry present, current, its shards at their
    sizes) are skipped unless ``force``, and their checksums verified (a shard
    corrupted in place is an error naming it, unless ``on_bad_member`` is ``skip``).
    The manifest lists what is complete;
    a collection appears once all its parts are done.
    """
    if is_remote(out_dir):
        return prepare_remote(mixture, str(out_dir), storage or StorageConfig(), workers=workers,
                              records_per_shard=records_per_shard, force=force, progress=progress, part=part)
    index, count = part
    if not 0 <= index < count:
        raise ShardError(f"slice {index}/{count}: expected i/n with 0 <= i < n")
    if workers < 1 or records_per_shard < 1:
        raise ShardError(f"workers and records per shard must be at least 1, got {workers} and {records_per_shard}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    mine = [(name, done, job) for i, (name, done, job) in enumerate(plan(mixture, root, records_per_shard, force))
            if i % count == index]
    jobs = [job for _, done, job in mine if not done]
    # a bar on a terminal only (None: tqdm's test), so a log or a pipe gets the outcome alone
    bar = tqdm(total=len(jobs), desc=f"prepare {mixture.name}", unit="job", disable=None if progress else True)
    records = 0
    with bar:  # closed before an error or an interruption is reported
        for n in _run(jobs, workers):
            records += n
            bar.set_postfix(records=records)
            bar.update()
    manifest = write_manifest(root)
    # A skipped task's shards are present at their sizes; one corrupted in place is an error, not a success.
    # (Past CHECKSUM_ALL_BYTES, a reader hashes each shard when it first opens it instead.)
    skipped = {name for name, done, _ in mine if done}
    kept = [t for t in mixture.tasks() if f"task {t.name}" in skipped]
    manifest.check(kept, checksums=manifest.shard_bytes(kept) <= CHECKSUM_ALL_BYTES, on_bad_member=on_bad_member)
    return manifest


def prepare_remote(mixture: Mixture, url: str, storage: StorageConfig, **options: Any) -> "Manifest":
    """``prepare`` to a URL: into a local staging directory (a rerun resumes there), then uploaded,
    the manifest last, assembled from every entry under the URL (other slices' too)."""
    store = open_store(url, storage)
    assert isinstance(store, RemoteStore)
    staging = store.staging()
    prepare(mixture, staging, **options)
    store.publish(staging, MANIFEST)
    store.pull(staging, ".json")
    write_manifest(staging)
    store.put(staging / MANIFEST, MANIFEST)
    return Manifest.load(url, storage)


def _is_current(task: Task, root: Path) -> bool:
    """The task's entry is there, in this format, with its fingerprint, and names shards present at their sizes."""
    entry = read_json(root / task_dir(task.name) / ENTRY)
    if entry is None or entry.get("format") != FORMAT_VERSION:
        return False
    try:
        Manifest(root, {task.name: entry}, entry["files"]).check([task])
    except ShardError:
        return False
    return True


def write_manifest(root: str | Path) -> "Manifest":
    """Assemble ``manifest.json`` from every current task entry and every complete collection."""
    root = Path(root)
    tasks: dict[str, Any] = {}
    files: dict[str, list] = {}
    for path in sorted(root.glob(f"*/{ENTRY}")):
        entry = read_json(path)
        if entry and entry.get("format") == FORMAT_VERSION:  # older entries are not published: prepare rebuilds them
            files.update(entry.pop("files"))
            tasks[entry["name"]] = entry
    collection_tasks, collection_files = flan_collection.entries(root)
    tasks.update((entry["name"], entry) for entry in collection_tasks)
    files.update(collection_files)
    write_json(root / MANIFEST, {"version": FORMAT_VERSION, "tasks": tasks, "files": files})
    return Manifest.load(root)


# ---- reading ------------------------------------------------------------------------


class Manifest:
    """The index of a shards directory: per task and split, its pieces; per shard file, its size and members.

    ``store`` is where the files are (a local directory by default, or a URL's cache: ``mixtures/storage/``).
    """

    def __init__(self, root: Path | str, tasks: dict[str, dict[str, Any]], files: dict[str, list],
                 store: LocalStore | RemoteStore | None = None):
        self.store = store or LocalStore(root)
        self.root = root
        self.tasks = tasks
        self.files = files

    @staticmethod
    def load(root: str | Path, storage: StorageConfig | None = None) -> "Manifest":
        """The manifest of a local directory or a URL (``storage``: its endpoint and cache)."""
        store = open_store(root, storage)
        root = store.url if isinstance(store, RemoteStore) else store.root
        path = store.name(MANIFEST)
        text = store.read_bytes(MANIFEST)
        if text is None:
            raise ShardError(f"{path}: no manifest; run `flanforge prepare MIXTURE --out {root}`")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ShardError(f"{path}: not a valid manifest: {err}") from None
        version = data.get("version") if isinstance(data, dict) else None
        if version in OLD_FORMATS:
            raise ShardError(
                f"{path}: shards in the old format {version} ({OLD_FORMATS[version]}); rebuild them in format "
                f"{FORMAT_VERSION} with `flanforge prepare MIXTURE --out {root}` (prepare rebuilds old tasks)"
            )
        if version != FORMAT_VERSION:
            raise ShardError(f"{path}: manifest version {version!r}, expected {FORMAT_VERSION}")
        return Manifest(root, *check_manifest(data, str(path)), store=store)

    def shards(self, task: str, split: str = "train") -> list[ShardInfo]:
        """The pieces of ``task``'s ``split``, in record order."""
        out = []
        for file, slot, n in self._entry(task)["splits"][split]["pieces"]:
            if file is None:
                out.append(ShardInfo(None, n, 0, (), slot))
            else:
                out.append(self.shard(file, n, slot))
        return out

    def shard(self, file: str, num_records: int = 0, slot: int = 0) -> ShardInfo:
        size, members = self.files[file]
        return ShardInfo(self.store.local_path(file), num_records, size, members, slot)

    def num_records(self, task: str, split: str = "train") -> int:
        return self._entry(task)["splits"][split]["num_records"]

    def bad_records(self, task: str) -> int:
        """Malformed source records skipped when the task was prepared (``on_bad_record: skip``)."""
        return self._entry(task)["bad_records"]

    def _entry(self, task: str) -> dict[str, Any]:
        if task not in self.tasks:
            raise ShardError(f"task '{task}' is not in {self.store.name(MANIFEST)}; "
                             "run `flanforge prepare` for this mixture")
        return self.tasks[task]

    def shard_bytes(self, tasks: Iterable[Task]) -> int:
        """Bytes of the distinct shard files the tasks' pieces lie in."""
        files = {f for t in tasks for split in SPLITS for f, _, _ in self._entry(t.name)["splits"][split]["pieces"]}
        return sum(self.files[f][0] for f in files if f is not None)

    def check(self, tasks: Iterable[Task], checksums: bool = False, on_bad_member: str = "error") -> None:
        """Raise :class:`ShardError` naming the task or file unless every task's shards are usable.

        Checks: the task is in the manifest with its current fingerprint and has
        train records; every shard file exists at its recorded size (and, with
        ``checksums``, every member matches its checksum, unless ``on_bad_member`` is ``skip``:
        then the reader skips and counts the records of a bad member), each file once. A remote
        file's size is checked from one listing; its members when a reader first reads it.
        """
        checksums = checksums and on_bad_member == "error"
        seen: set[str] = set()
        for task in tasks:
            entry = self._entry(task.name)
            if entry["fingerprint"] != fingerprint(task):
                raise ShardError(
                    f"task '{task.name}': shards in {self.root} were prepared from another "
                    "definition of the task (fingerprint mismatch); run `flanforge prepare` again"
                )
            if self.num_records(task.name) == 0:
                raise ShardError(f"task '{task.name}' has no train records")
            for split in SPLITS:
                for file, _, _ in entry["splits"][split]["pieces"]:
                    if file is not None and file not in seen:
                        seen.add(file)
                        self._verify(file, checksums)

    def _verify(self, file: str, checksums: bool) -> None:
        shard = self.shard(file)
        if isinstance(self.store, RemoteStore):
            self.store.verify(file, shard.bytes)
        else:
            verify_shard(shard, checksums)


def ensure_prepared(mixture: Mixture, out_dir: str | Path, workers: int = 1, progress: bool = False,
                    on_bad_member: str = "error", storage: StorageConfig | None = None) -> Manifest:
    """Prepare what is missing or stale, then check every task's shards (checksums included).

    A remote set (a URL) is only checked: ``flanforge prepare --out URL`` writes it, once, not every job
    that trains from it.

    Called on rank 0 before training; an all-zero mixture, a task without
    records or a damaged shard is an error here, before the first step.
    Shards totalling more than :data:`CHECKSUM_ALL_BYTES` (a whole Flan
    collection) are checked for presence and size here and hashed when a
    reader first opens each one, so a start does not read hundreds of GB.
    """
    mixture.rates()  # raises when every rate is zero
    if is_remote(out_dir):
        manifest = Manifest.load(out_dir, storage)
    else:
        manifest = prepare(mixture, out_dir, workers=workers, progress=progress, on_bad_member=on_bad_member)
    tasks = mixture.tasks()
    manifest.check(tasks, checksums=manifest.shard_bytes(tasks) <= CHECKSUM_ALL_BYTES, on_bad_member=on_bad_member)
    return manifest


def verify_directory(root: str | Path) -> tuple[list[str], int]:
    """Every problem of the shards directory ``root``, one a line (a shard missing or of another size,
    a member whose bytes do not match its checksum), and the bytes read."""
    manifest = Manifest.load(root)
    problems, read = [], 0
    for file in sorted(manifest.files):
        shard = manifest.shard(file)
        try:
            data = read_shard(shard)
        except ShardError as err:
            problems.append(str(err))
            continue
        read += len(data)
        problems += [f"{shard.path}: member {name} does not match its checksum" for name in bad_members(data, shard)]
    return problems, read


def check_out(root: str | Path) -> None:
    """Refuse, before any work, an ``--out`` that is not a directory, or a non-empty one that holds
    anything but a shards directory's own files (tasks' folders, ``collections/``, the manifest)."""
    if is_remote(root):
        return  # a URL: its store checks it (prepare_remote)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ShardError(f"--out {root}: exists and is not a directory; give a new, empty or prepared directory")
    if not root.is_dir() or (root / MANIFEST).is_file():
        return
    ours = re.compile(rf"{ENTRY}|({'|'.join(SPLITS)})-\d{{5}}\.tar|\..+\.tmp")
    for path in sorted(root.iterdir()):
        if path.name == flan_collection.COLLECTIONS or ours.fullmatch(path.name) or (
                path.is_dir() and all(ours.fullmatch(p.name) for p in path.iterdir())):
            continue
        raise ShardError(f"--out {root}: a non-empty directory that is not a shards directory (it holds "
                         f"'{path.name}'); give a new, empty or prepared directory")


class ShardReader:
    """Random access to records of prepared tasks; one per process (holds file handles).

    ``tasks`` gives the records of tasks prepared without shards (generated on demand). A member
    whose bytes do not match its checksum is an error, or with ``on_bad_member="skip"`` its
    records read as None.
    """

    def __init__(self, manifest: Manifest, tasks: Mapping[str, Task] | None = None, max_open: int = 64,
                 on_bad_member: str = "error"):
        self.manifest = manifest
        self.tasks = dict(tasks or {})
        self.on_bad_member = on_bad_member
        self.max_open = max_open
        self._files: OrderedDict[Path, int] = OrderedDict()  # path -> fd, least recently used first
        self._index: dict[Path, dict[int, np.ndarray]] = {}  # path -> slot -> (records, 2) offset, length
        self._layout: dict[tuple[str, str], tuple[list[ShardInfo], np.ndarray]] = {}

    def record(self, task: str, index: int, split: str = "train") -> dict[str, Any] | None:
        shards, starts = self._shards(task, split)
        k = int(np.searchsorted(starts, index, side="right")) - 1
        shard = shards[k]
        if shard.path is None:
            if task not in self.tasks:
                raise ShardError(f"task '{task}' is generated on demand; pass its Task to the ShardReader")
            return dict(self.tasks[task].records(split)[index])
        fd = self._open(shard)
        rows = self._index[shard.path].get(shard.slot)
        if rows is None or len(rows) != shard.num_records:
            have = 0 if rows is None else len(rows)
            raise ShardError(f"{shard.path}: holds {have} records of slot {shard.slot}, the manifest says {shard.num_records}")
        offset, size = rows[index - starts[k]]
        if size == 0:
            return None  # in a bad member, skipped (no record is empty)
        return json.loads(os.pread(fd, int(size), int(offset)))

    def pieces(self, task: str, records: np.ndarray, split: str = "train") -> list[ShardInfo]:
        """The distinct shard pieces holding these records of ``task``, in order of first use."""
        shards, starts = self._shards(task, split)
        ks = np.searchsorted(starts, records, side="right") - 1
        return [shards[k] for k in dict.fromkeys(ks.tolist()) if shards[k].path is not None]

    def retries(self) -> int:
        """Remote reads this process retried (0 for a local directory)."""
        return self.manifest.store.retries()

    @property
    def remote(self) -> bool:
        """Shards read through a cache (fetched, pinned while open) rather than where they are."""
        return self.manifest.store.remote

    def retain(self, pieces: Iterable[ShardInfo]) -> None:
        """Close every open shard but these (a cached shard stays pinned while open)."""
        keep = {p.path for p in pieces}
        for path in [p for p in self._files if p not in keep]:
            os.close(self._files.pop(path))

    def prefetch(self, pieces: Iterable[ShardInfo]) -> None:
        """Download these remote shards in the background (in order, as far as the cache has room)."""
        store = self.manifest.store
        if isinstance(store, RemoteStore):
            store.prefetch([(p.path, p.bytes) for p in pieces])

    def _shards(self, task: str, split: str) -> tuple[list[ShardInfo], np.ndarray]:
        key = (task, split)
        if key not in self._layout:
            shards = self.manifest.shards(task, split)
            starts = np.cumsum([0] + [s.num_records for s in shards[:-1]])
            self._layout[key] = (shards, starts)
        return self._layout[key]

    def _open(self, shard: ShardInfo) -> int:
        assert shard.path is not None
        fd = self._files.get(shard.path)
        if fd is not None:
            self._files.move_to_end(shard.path)
            return fd
        if len(self._files) >= self.max_open:
            os.close(self._files.popitem(last=False)[1])
        store = self.manifest.store
        if isinstance(store, RemoteStore):  # into the node's cache first; pinned there while open
            self._files[shard.path] = store.open(shard.path, shard.bytes)
        if shard.path not in self._index:
            try:
                self._index[shard.path] = self._index_of(shard)
            except ShardError as err:
                if not isinstance(store, RemoteStore):
                    raise
                # the object changed under the job: name it, and keep no copy that would fail every run
                os.close(self._files.pop(shard.path))
                shard.path.unlink(missing_ok=True)
                raise ShardError(str(err).replace(str(shard.path), store.url_of(shard.path))) from None
        if shard.path not in self._files:
            self._files[shard.path] = os.open(shard.path, os.O_RDONLY)
        return self._files[shard.path]

    def _index_of(self, shard: ShardInfo) -> dict[int, np.ndarray]:
        """Every record's byte range in ``shard``, once its members' checksums are checked (a bad member's
        records are skipped under ``on_bad_record: skip``, else an error naming shard and member)."""
        data = read_shard(shard)
        bad = bad_members(data, shard)
        if bad and self.on_bad_member != "skip":
            raise corrupt(shard, bad)
        return chunk_index(data, shard, skip=bad)
