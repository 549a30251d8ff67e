"""Webdataset tar shards whose samples hold chunks of records, one JSON object a line.

A sample is one tar member ``{slot:05d}_{start:09d}.jsonl`` (webdataset key
``{slot:05d}_{start:09d}``, field ``jsonl``): records ``start, start + 1, ...``
of the shard's ``slot``-th record stream (one task's split), one JSON object a
line. A shard may hold several streams (a Flan-collection part holds hundreds
of tasks); each stream's chunks appear in order. With up to
:data:`CHUNK_RECORDS` records a member, the tar header and padding cost a few
bytes a record instead of a kilobyte.

Shards are written under a temporary name, each member checksummed as it is
written, and renamed when complete (:class:`ShardWriter`); :class:`RoutedWriter`
sorts a stream of ``(stream key, line)`` pairs into rolling shards with bounded
memory. The manifest lists every member of a shard (name, bytes, records,
checksum): :func:`bad_members` proves a shard's bytes, and :func:`chunk_index`
finds every record's byte range from them.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import xxhash

from flanforge.files import AtomicFile, atomic_write

from flanforge.mixtures.task import SPLITS, TaskError

CHUNK_RECORDS = 256
"""Records a member holds at most (a member also closes at :data:`CHUNK_BYTES`)."""
CHUNK_BYTES = 1 << 20
BUFFER_BYTES = 64 << 20
"""What :class:`RoutedWriter` keeps in memory before it writes every pending chunk out."""
MEMBER = re.compile(r"(\d{5})_(\d{9})\.jsonl")
_END = b"\0" * 1024  # two zero blocks end a tar archive


class ShardError(TaskError):
    """A shards directory that cannot be used as it is; the message names the file or task."""


def encode(record: dict[str, Any], where: str) -> bytes:
    """One record as a JSON line (a JSON text never holds a raw newline, so lines split records)."""
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
    except (TypeError, ValueError) as err:
        raise ShardError(f"{where} is not JSON-serialisable: {err}") from None


def fingerprint_of(name: str, fields: Sequence[str], counts: Mapping[str, int]) -> str:
    spec = {"name": name, "fields": list(fields), "counts": {s: int(counts.get(s, 0)) for s in SPLITS}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically and durably."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """A JSON object from ``path``; None when it is absent or damaged (the job that writes it runs again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ShardWriter:
    """One shard, written under a temporary name and renamed to ``path`` by :meth:`close` (never
    half-published); each member's bytes (header, data, padding) checksummed as they are written."""

    def __init__(self, path: Path):
        self.path = path
        self.file = AtomicFile(path)
        self.members: list[list] = []  # [name, bytes, records, xxh3-64 hex] per member, in file order
        self.counts: dict[int, int] = {}  # slot -> records written

    @property
    def bytes(self) -> int:
        return self.file.bytes

    def add(self, slot: int, lines: list[bytes]) -> None:
        """Append one member holding ``lines`` (each ending with a newline) to stream ``slot``."""
        start = self.counts.get(slot, 0)
        data = b"".join(lines)
        info = tarfile.TarInfo(f"{slot:05d}_{start:09d}.jsonl")
        info.size, info.mtime, info.mode = len(data), 0, 0o444  # fixed mtime: same records, same bytes
        member = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict") + data + b"\0" * (-len(data) % 512)
        self.file.write(member)
        self.members.append([info.name, len(member), len(lines), checksum(member)])
        self.counts[slot] = start + len(lines)

    def close(self) -> dict[str, Any]:
        """Finish and publish the shard: ``{"file", "bytes", "members"}``."""
        self.file.write(_END)
        self.file.publish()
        return {"file": self.path.name, "bytes": self.bytes, "members": self.members}

    def abort(self) -> None:
        self.file.discard()


def write_records(path: Path, lines: Iterable[bytes]) -> dict[str, Any]:
    """A shard holding one stream (slot 0): ``{"file", "bytes", "members", "num_records"}``."""
    writer = ShardWriter(path)
    try:
        chunk: list[bytes] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == CHUNK_RECORDS:
                writer.add(0, chunk)
                chunk = []
        if chunk:
            writer.add(0, chunk)
    except BaseException:
        writer.abort()
        raise
    return {**writer.close(), "num_records": writer.counts.get(0, 0)}


class RoutedWriter:
    """Sorts ``(key, line)`` pairs into shards ``<stem>-00000.tar, ...`` of about ``shard_bytes`` each.

    Each key's lines are buffered into chunks; a full chunk is written to the
    current shard, and when the buffers together exceed :data:`BUFFER_BYTES`
    every pending chunk is written, so memory stays bounded whatever the input
    size or the number of keys. :meth:`close` returns, per shard, its file
    entry and ``{key: [slot, records]}``.
    """

    def __init__(self, out_dir: Path, stem: str, shard_bytes: int):
        self.out_dir, self.stem, self.shard_bytes = out_dir, stem, shard_bytes
        self.buffers: dict[str, list[bytes]] = {}
        self.sizes: dict[str, int] = {}
        self.buffered = 0
        self.done: list[dict[str, Any]] = []
        self.writer: ShardWriter | None = None
        self.slots: dict[str, int] = {}

    def add(self, key: str, line: bytes) -> None:
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = self.buffers[key] = []
            self.sizes[key] = 0
        buffer.append(line)
        size = self.sizes[key] = self.sizes[key] + len(line)
        self.buffered += len(line)
        if len(buffer) >= CHUNK_RECORDS or size >= CHUNK_BYTES:
            self._flush(key)
        elif self.buffered >= BUFFER_BYTES:
            for k in list(self.buffers):
                self._flush(k)

    def _flush(self, key: str) -> None:
        lines = self.buffers.pop(key)
        self.buffered -= self.sizes.pop(key)
        if self.writer is None:
            self.writer = ShardWriter(self.out_dir / f"{self.stem}-{len(self.done):05d}.tar")
            self.slots = {}
        slot = self.slots.setdefault(key, len(self.slots))
        self.writer.add(slot, lines)
        if self.writer.bytes >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        assert self.writer is not None
        counts = self.writer.counts
        self.done.append({**self.writer.close(), "streams": {k: [s, counts[s]] for k, s in self.slots.items()}})
        self.writer = None

    def close(self) -> list[dict[str, Any]]:
        for key in list(self.buffers):
            self._flush(key)
        if self.writer is not None:
            self._close_shard()
        return self.done

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def checksum(data: bytes | memoryview) -> str:
    """A member's checksum: xxh3-64 (about 12 GB/s a core here, against 3.5 for crc32c and 0.5 for sha256)."""
    return xxhash.xxh3_64_hexdigest(data)


def file_entry(shard: dict[str, Any]) -> list:
    """A shard's line in the manifest's ``files``: ``[bytes, members]``."""
    return [shard["bytes"], shard["members"]]


@dataclass(frozen=True)
class ShardInfo:
    """One piece of a task's split: ``num_records`` records of stream ``slot`` in the shard at ``path``.

    ``path`` is None for a task whose records are generated on demand. ``members``: the shard's
    members in file order, ``[name, bytes, records, checksum]`` each (the manifest's).
    """

    path: Optional[Path]
    num_records: int
    bytes: int
    members: Sequence[Sequence[Any]] = ()
    slot: int = 0


def verify_shard(shard: ShardInfo, checksum: bool = True) -> None:
    """Raise :class:`ShardError` unless the shard exists at its recorded size (and every member
    matches its checksum)."""
    assert shard.path is not None
    if checksum:
        bad = bad_members(read_shard(shard), shard)
        if bad:
            raise corrupt(shard, bad)
    elif not shard.path.is_file():
        raise ShardError(f"{shard.path}: shard is missing")
    elif shard.path.stat().st_size != shard.bytes:
        _size_error(shard, shard.path.stat().st_size)


def read_shard(shard: ShardInfo) -> bytes:
    """The shard's bytes, checked against the manifest's size (:func:`bad_members` checks their content)."""
    assert shard.path is not None
    try:
        data = shard.path.read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{shard.path}: shard is missing") from None
    if len(data) != shard.bytes:
        _size_error(shard, len(data))
    return data


def bad_members(data: bytes, shard: ShardInfo) -> list[str]:
    """The names of the members of ``data`` (the shard's bytes, at its size) whose bytes do not match
    their checksum, and ``"end of archive"`` when the closing zero blocks are not zero."""
    view, offset, bad = memoryview(data), 0, []
    for name, size, _, digest in shard.members:
        if checksum(view[offset:offset + size]) != digest:
            bad.append(name)
        offset += size
    if view[offset:] != _END:
        bad.append("end of archive")
    return bad


def corrupt(shard: ShardInfo, bad: Sequence[str]) -> ShardError:
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return ShardError(f"{shard.path}: member {bad[0]}{more} does not match its checksum in the manifest (changed "
                      "on disk); run `flanforge prepare --verify` on the directory for every bad member, then "
                      "prepare again with --force, or set mixture.on_bad_record: skip to skip their records")


def _size_error(shard: ShardInfo, size: int) -> None:
    raise ShardError(f"{shard.path}: shard is {size} bytes, the manifest says {shard.bytes} (truncated or rewritten)")


def chunk_index(data: bytes, shard: ShardInfo, skip: Sequence[str] = ()) -> dict[int, np.ndarray]:
    """Per slot, ``(records, 2)``: byte offset and length of each record's JSON text, in record order.

    The members lie where the manifest says (their checksums prove it, :func:`bad_members`), and
    every newline byte in a member's data ends a record (JSON text holds no raw newline; headers
    and padding hold none). The records of the members named in ``skip`` get length 0 (a record
    is never empty): unreadable.
    """
    flat = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(flat == 10)
    parts: dict[int, list[np.ndarray]] = {}
    offset = 0
    for name, size, count, _ in shard.members:
        slot, start = (int(g) for g in MEMBER.fullmatch(name).groups())  # type: ignore[union-attr]
        if start != sum(len(r) for r in parts.get(slot, [])):
            raise ShardError(f"{shard.path}: member {name} is out of order in the manifest")
        if name in skip:
            rows = np.zeros((count, 2), dtype=np.int64)
        else:
            lo, hi = np.searchsorted(newlines, [offset + 512, offset + size])
            if hi - lo != count:
                raise ShardError(f"{shard.path}: member {name} holds {hi - lo} records, the manifest says {count}")
            ends = newlines[lo:hi]
            starts = np.concatenate([[offset + 512], ends[:-1] + 1])
            rows = np.stack([starts, ends - starts], axis=1)
        parts.setdefault(slot, []).append(rows)
        offset += size
    dtype = np.uint32 if len(data) < 2**32 else np.int64  # 8 bytes a record held per reader, not 16
    return {slot: np.concatenate(rows).astype(dtype) for slot, rows in parts.items()}
