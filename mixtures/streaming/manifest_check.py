"""The structure of a shards directory's ``manifest.json`` (format 3), checked before it is used.

A manifest damaged by hand or by a tool is an error naming the file and the
key, never a ``KeyError`` later; a shard path in it must be a plain relative
path inside the shards directory, so a manifest can never make the reader
open a file elsewhere.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from flanforge.mixtures.streaming.chunks import MEMBER, ShardError
from flanforge.mixtures.task import SPLITS

_SAFE_PART = re.compile(r"[A-Za-z0-9_.=-]+")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _member(m: Any) -> bool:
    """``[name, bytes, records, checksum]``: a member's name as prepare writes it, its bytes a whole
    number of tar blocks, at least one record."""
    return (isinstance(m, list) and len(m) == 4 and isinstance(m[0], str) and MEMBER.fullmatch(m[0]) is not None
            and _count(m[1]) and m[1] >= 1024 and m[1] % 512 == 0 and _count(m[2]) and m[2] >= 1
            and isinstance(m[3], str))


def _bad(where: str, what: str, value: Any) -> ShardError:
    return ShardError(f"{where}: {what}, got {str(value)[:80]!r}")


def _inside(rel: Any, where: str) -> str:
    """``rel`` if it is a relative path that stays inside the shards directory."""
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    if not parts or rel.startswith("/") or any(p in (".", "..") or not _SAFE_PART.fullmatch(p) for p in parts):
        raise _bad(where, "a shard path must be a plain relative path inside the shards directory", rel)
    return rel


def check_manifest(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, list]]:
    """``(tasks, files)`` of a format-3 manifest, or a :class:`ShardError` naming the key."""
    tasks, files = data.get("tasks"), data.get("files")
    if not isinstance(tasks, dict) or not isinstance(files, dict):
        raise _bad(where, "'tasks' and 'files' must be mappings", (type(tasks).__name__, type(files).__name__))
    for rel, info in files.items():
        _inside(rel, f"{where}: files")
        if not (isinstance(info, list) and len(info) == 2 and _count(info[0]) and isinstance(info[1], list)
                and all(_member(m) for m in info[1]) and sum(m[1] for m in info[1]) + 1024 == info[0]):
            raise _bad(f"{where}: files[{rel!r}]", "expected [size, [[member, bytes, records, checksum], ...]] (members and the 1024 closing bytes add up to size)", info)
    for name, entry in tasks.items():
        check_entry(entry, files, f"{where}: task {name!r}")
    return tasks, files


def check_entry(entry: Any, files: dict[str, list], where: str) -> None:
    """One task's entry: its name, fingerprint, counts and pieces (each in a listed file)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("fingerprint"), str):
        raise _bad(where, "an entry needs a string 'name' and 'fingerprint'", entry)
    if not _count(entry.get("bad_records")):
        raise _bad(where, "'bad_records' must be a count", entry.get("bad_records"))
    splits = entry.get("splits")
    for split in SPLITS:
        info = splits.get(split) if isinstance(splits, dict) else None
        at = f"{where}: splits.{split}"
        if not isinstance(info, dict) or not _count(info.get("num_records")) or not isinstance(info.get("pieces"), list):
            raise _bad(at, "expected {num_records: count, pieces: list}", info)
        total = 0
        for piece in info["pieces"]:
            if not (isinstance(piece, list) and len(piece) == 3 and _count(piece[1]) and _count(piece[2])):
                raise _bad(at, "a piece is [file, slot, records]", piece)
            if piece[0] is not None and _inside(piece[0], at) not in files:
                raise _bad(at, "a piece names a file the manifest does not list", piece[0])
            total += piece[2]
        if total != info["num_records"]:
            raise _bad(at, f"pieces hold {total} records, but num_records is", info["num_records"])
