"""Webdataset tar shards whose samples hold chunks of records, one JSON object a line.

A sample is one tar member ``{slot:05d}_{start:09d}.jsonl`` (webdataset key
``{slot:05d}_{start:09d}``, field ``jsonl``): records ``start, start + 1, ...``
of the shard's ``slot``-th record stream (one task's split), one JSON object a
line. A shard may hold several streams (a Flan-collection part holds hundreds
of tasks); each stream's chunks appear in order. With up to
:data:`CHUNK_RECORDS` records a member, the tar header and padding cost a few
bytes a record instead of a kilobyte.

Shards are written under a temporary name, hashed as they are written, and
renamed when complete (:class:`ShardWriter`); :class:`RoutedWriter` sorts a
stream of ``(stream key, line)`` pairs into rolling shards with bounded memory.
:func:`chunk_index` finds every record's byte range from a shard's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from flanforge.files import atomic_write, fsync_dir

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
    """One shard, written to ``<path>.tmp`` and renamed to ``path`` by :meth:`close` (never half-published)."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.file = open(self.tmp, "wb")
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.counts: dict[int, int] = {}  # slot -> records written

    def add(self, slot: int, lines: list[bytes]) -> None:
        """Append one member holding ``lines`` (each ending with a newline) to stream ``slot``."""
        start = self.counts.get(slot, 0)
        data = b"".join(lines)
        info = tarfile.TarInfo(f"{slot:05d}_{start:09d}.jsonl")
        info.size, info.mtime, info.mode = len(data), 0, 0o444  # fixed mtime: same records, same bytes
        self._write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
        self._write(data + b"\0" * (-len(data) % 512))
        self.counts[slot] = start + len(lines)

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.sha.update(data)
        self.bytes += len(data)

    def close(self) -> dict[str, Any]:
        """Finish and publish the shard: ``{"file", "bytes", "sha256"}``."""
        self._write(_END)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return {"file": self.path.name, "bytes": self.bytes, "sha256": self.sha.hexdigest()}

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def write_records(path: Path, lines: Iterable[bytes]) -> dict[str, Any]:
    """A shard holding one stream (slot 0): ``{"file", "bytes", "sha256", "num_records"}``."""
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


@dataclass(frozen=True)
class ShardInfo:
    """One piece of a task's split: ``num_records`` records of stream ``slot`` in the shard at ``path``.

    ``path`` is None for a task whose records are generated on demand.
    """

    path: Optional[Path]
    num_records: int
    bytes: int
    sha256: str
    slot: int = 0


def verify_shard(shard: ShardInfo, checksum: bool = True) -> None:
    """Raise :class:`ShardError` unless the shard exists at its recorded size (and sha256)."""
    assert shard.path is not None
    if checksum:
        read_shard(shard)
    elif not shard.path.is_file():
        raise ShardError(f"{shard.path}: shard is missing")
    elif shard.path.stat().st_size != shard.bytes:
        _size_error(shard, shard.path.stat().st_size)


def read_shard(shard: ShardInfo) -> bytes:
    """The shard's bytes, checked against the manifest's size and sha256."""
    assert shard.path is not None
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


_USTAR_MAGIC = np.frombuffer(b"ustar\x0000", dtype=np.uint8)
_OCTAL = 8 ** np.arange(10, -1, -1)


def chunk_index(data: bytes, where: Path) -> dict[int, np.ndarray]:
    """Per slot, ``(records, 2)``: byte offset and length of each record's JSON text, in record order.

    Reads the ustar headers with numpy (``tarfile``'s per-member cost made
    opening thousands of shards slow). Sound for a shard whose sha256 matched:
    a header is the only 512-byte block with the ustar magic at byte 257, and
    every newline byte in the file ends a record (JSON text holds no NUL and no
    raw newline; headers and padding hold neither).
    """
    if len(data) % 512:
        raise ShardError(f"{where}: not a tar file (its size is not a multiple of 512 bytes)")
    flat = np.frombuffer(data, dtype=np.uint8)
    blocks = flat.reshape(-1, 512)
    headers = np.flatnonzero((blocks[:, 257:265] == _USTAR_MAGIC).all(axis=1))
    digits = blocks[headers, 124:135].astype(np.int64) - ord("0")  # size: 11 octal digits
    if (digits < 0).any() or (digits > 7).any() or not (blocks[headers, 156] == ord("0")).all():
        raise ShardError(f"{where}: not a shard of regular ustar members as prepare writes them")
    offsets, sizes = (headers + 1) * 512, digits @ _OCTAL
    names = [MEMBER.fullmatch(bytes(blocks[h, :100]).rstrip(b"\0").decode("ascii", "replace")) for h in headers]
    if not all(names):
        raise ShardError(f"{where}: holds members that are not record chunks (an older shard format?); prepare again")
    newlines = np.flatnonzero(flat == 10)
    lo, hi = np.searchsorted(newlines, offsets), np.searchsorted(newlines, offsets + sizes)
    starts = np.empty_like(newlines)
    starts[1:] = newlines[:-1] + 1
    starts[lo[hi > lo]] = offsets[hi > lo]
    rows = np.stack([starts, newlines - starts], axis=1)
    if len(data) < 2**32:
        rows = rows.astype(np.uint32)  # 8 bytes a record held per reader, not 16
    index: dict[int, list[np.ndarray]] = {}
    for m, match in enumerate(names):
        slot, start = int(match.group(1)), int(match.group(2))
        have = sum(len(r) for r in index.get(slot, []))
        if start != have or (sizes[m] and data[offsets[m] + sizes[m] - 1] != 10):
            raise ShardError(f"{where}: member {match.group(0)} is out of order or cut short")
        index.setdefault(slot, []).append(rows[lo[m]: hi[m]])
    return {slot: np.concatenate(parts) for slot, parts in index.items()}
