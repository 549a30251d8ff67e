"""A bounded local cache of remote files, shared by the processes of a node.

Layout under the cache directory (a node's local disk)::

    .lock                      held while a process makes room (evicts) or reserves bytes
    <key>/<file>               a complete, verified copy of a remote file
    <key>/<file>.lock          held while one process downloads <file> (the others wait, then use it)
    <key>/<file>.<size>.<id>.part   a download in progress; its name reserves ``size`` bytes

Sharing: a download happens under the file's lock, into a ``.part`` file,
checked against the size the index records, and renamed into place, so the
ranks of a node download a file once and never read half of one. A reader
holds a shared ``flock`` on each cached file it has open (:meth:`ShardCache.open`);
eviction takes the exclusive lock without waiting and skips a file it cannot
get, so nothing a consumer reads is evicted. Least recently used (by mtime,
touched on every open) goes first; the bytes held (complete files plus
reservations) never exceed the limit. Read-ahead downloads in flight hold at
most half of it (the rest is for what consumers read now), and a ``.part``
file whose downloader died (its lock free) is deleted when room is made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

from flanforge.errors import StorageError
from flanforge.mixtures.storage.retry import CutShort
from flanforge.sizes import format_bytes

LOCK = ".lock"
PART = ".part"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _held_bytes(path: Path) -> int:
    """Bytes a cache entry holds: a ``.part`` file its reservation, a lock file nothing."""
    name = path.name
    if name.endswith(LOCK):
        return 0
    if name.endswith(PART):
        return int(name.rsplit(".", 3)[-3])
    return path.stat().st_size


class ShardCache:
    """Remote files as local files under ``root``, holding at most ``limit`` bytes."""

    def __init__(self, root: Path, limit: int):
        self.root, self.limit = root, limit
        self.downloaded = 0
        """Bytes this process downloaded."""
        self.peak = 0
        """The most bytes the cache held when this process reserved room."""

    def path(self, key: str) -> Path:
        return self.root / key

    def open(self, key: str, size: int, download: Callable[[Path], None]) -> int:
        """A read-only descriptor of ``key``'s cached copy, pinned (never evicted) until it is closed;
        downloaded first (``download(part_path)``) when absent."""
        while True:
            fd = self._open_pinned(self.path(key), size)
            if fd is not None:
                os.utime(self.path(key))  # most recently used
                return fd
            self.fetch(key, size, download, required=True)

    def fetch(self, key: str, size: int, download: Callable[[Path], None], required: bool = False) -> bool:
        """Download ``key`` unless it is cached; False when there is no room for it and it is not
        ``required`` (a read-ahead), else a :class:`StorageError`."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + LOCK)):  # one download per node
            if path.is_file() and path.stat().st_size == size:
                return True
            part = self._reserve(path, size, required)
            if part is None:
                return False
            try:
                download(part)
                got = part.stat().st_size
                if got != size:  # a checksum of the whole file (issue 23's manifest) would be checked here too
                    raise CutShort(f"downloaded {got} bytes, the index says {size}")
                with file_lock(self.root / LOCK):  # never between a room-making scan's listing and its stats
                    os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)
            self.downloaded += size
        return True

    def cached(self, key: str, size: int) -> bool:
        path = self.path(key)
        return path.is_file() and path.stat().st_size == size

    def usage(self) -> int:
        """Bytes the cache holds now (complete files and reservations)."""
        return sum(used for _, used, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for path in self.root.rglob("*"):
            with contextlib.suppress(FileNotFoundError):  # another process renamed or evicted it
                if path.is_file() and path.name != LOCK:
                    out.append((path.stat().st_mtime, _held_bytes(path), path))
        return out

    def _reserve(self, path: Path, size: int, required: bool) -> Path | None:
        """Evict least recently used files until ``size`` more bytes fit, then create the ``.part`` file
        that reserves them; None (not ``required``) or a :class:`StorageError` when they cannot fit."""
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / LOCK):
            entries = [e for e in self._entries() if not self._stale(e[2])]
            used = sum(held for _, held, _ in entries)
            in_flight = sum(held for _, held, path in entries if path.name.endswith(PART))
            if not required and in_flight + size > self.limit // 2:
                return None  # read-ahead downloads hold at most half the cache: the rest is for what is read now
            for _, held, victim in sorted(entries):
                if used + size <= self.limit:
                    break
                if held and not victim.name.endswith(PART) and self._evict(victim):
                    used -= held
            if used + size > self.limit:
                if not required:
                    return None
                raise StorageError(
                    f"storage.cache_limit={self.limit}: the cache at {self.root} cannot hold {path.name} "
                    f"({format_bytes(size)}) besides the {format_bytes(used)} being read or downloaded; raise "
                    "storage.cache_limit (it must hold the shards one block of every rank of a node reads)")
            part = path.with_name(f"{path.name}.{size}.{uuid.uuid4().hex[:8]}{PART}")
            part.touch()
            self.peak = max(self.peak, used + size)
        return part

    @staticmethod
    def _stale(path: Path) -> bool:
        """A ``.part`` file no process is downloading (its downloader was killed): deleted, and True."""
        if not path.name.endswith(PART):
            return False
        lock = path.with_name(path.name.rsplit(".", 3)[0] + LOCK)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its download is running
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        return True

    @staticmethod
    def _evict(path: Path) -> bool:
        """Delete ``path`` unless a reader holds it open (its shared lock); True when deleted."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        else:
            path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)

    @staticmethod
    def _open_pinned(path: Path, size: int) -> int | None:
        """``path`` open with a shared lock, or None when it is absent, evicted meanwhile, or not ``size``."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        stat = os.fstat(fd)
        if stat.st_nlink == 0 or stat.st_size != size:
            os.close(fd)
            return None
        return fd
