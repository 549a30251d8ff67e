"""The root of a prepared shards set, local or remote, behind one interface.

:class:`LocalStore` reads a directory as flanforge always did (no copy);
:class:`RemoteStore` reads an fsspec URL through a :class:`ShardCache`, with
read-ahead in background threads and every request retried by one
:class:`Retrier` (its ``count`` goes to TensorBoard as ``data/retries``).
:func:`open_store` picks one from the location.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from flanforge.errors import StorageError
from flanforge.files import atomic_write
from flanforge.mixtures.storage.cache import ShardCache
from flanforge.mixtures.storage.config import StorageConfig
from flanforge.mixtures.storage.retry import NotFound, Retrier
from flanforge.mixtures.storage.urls import endpoint, filesystem, is_remote, local_path, public, split


PUBLISHED = ".published.json"


class LocalStore:
    """A directory on a local or shared filesystem."""

    remote = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(local_path(root))

    def name(self, rel: str) -> str:
        return str(self.root / rel)

    def local_path(self, rel: str) -> Path:
        return self.root / rel

    def read_bytes(self, rel: str) -> bytes | None:
        path = self.root / rel
        return path.read_bytes() if path.is_file() else None

    def retries(self) -> int:
        return 0


class RemoteStore:
    """An fsspec URL; files cached under ``<cache_dir>/shards/<hash of the URL>/``."""

    remote = True

    def __init__(self, url: str, cfg: StorageConfig):
        self.url, self.cfg = url.rstrip("/"), cfg
        self.read_ahead = cfg.read_ahead
        self.scheme, self.path = split(self.url)
        self.prefix = hashlib.sha256(self.url.encode()).hexdigest()[:16]  # this URL's folder in the cache
        self.cache = ShardCache(cache_root(cfg) / "shards", cfg.cache_bytes())
        self.retrier = Retrier(cfg.retries, cfg.retry_backoff)
        self._fs: Any = None
        self._pid = -1
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}
        self._sizes: dict[str, int] | None = None

    def _process(self) -> tuple[Any, ThreadPoolExecutor]:
        """This process's filesystem and download threads, made again after a fork (DataLoader workers):
        neither an fsspec event loop nor threads survive one."""
        if self._pid != os.getpid() or self._pool is None:
            self._fs = filesystem(self.url, self.cfg.endpoint_url, self.cfg.timeout)
            self._pid, self._pending = os.getpid(), {}
            self._pool = ThreadPoolExecutor(self.cfg.download_workers, thread_name_prefix="flanforge-fetch")
        return self._fs, self._pool

    @property
    def fs(self) -> Any:
        return self._process()[0]

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.retrier.call(lambda: fn(*args, **kwargs), what)

    def name(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def remote_path(self, rel: str) -> str:
        return f"{self.path}/{rel}"

    def local_path(self, rel: str) -> Path:
        return self.cache.path(self._key(rel))

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"

    def retries(self) -> int:
        return self.retrier.count

    # -- small files and listings

    def read_bytes(self, rel: str) -> bytes | None:
        """A small file (the manifest), not cached; None when it is absent."""
        try:
            return self._call(self.name(rel), self.fs.cat_file, self.remote_path(rel))
        except NotFound:
            return None

    def sizes(self) -> dict[str, int]:
        """Every file under the URL and its size (one listing, kept)."""
        if self._sizes is None:
            found = self._call(self.url, self.fs.find, self.path, detail=True)
            self._sizes = {name[len(self.path) + 1:]: int(info["size"]) for name, info in found.items()}
        return self._sizes

    # -- shards through the cache

    def verify(self, rel: str, size: int) -> None:
        """Raise unless ``rel`` is present at ``size`` bytes (its members' checksums are checked when a reader first reads it)."""
        have = self.sizes().get(rel)
        if have is None:
            raise StorageError(f"{self.name(rel)}: shard is missing")
        if have != size:
            raise StorageError(f"{self.name(rel)}: shard is {have} bytes, the manifest says {size} "
                               "(truncated or rewritten)")

    def open(self, path: Path, size: int) -> int:
        """A descriptor of the cached copy at ``path`` (:meth:`local_path`), pinned until closed; waits for
        its read-ahead, or downloads it now."""
        rel = self._rel(path)
        pending = self._pending.pop(rel, None)
        if pending is not None:
            pending.result()  # its error (after retries) is this read's error
        return self.cache.open(self._key(rel), size, self._downloader(rel))

    def prefetch(self, files: Iterable[tuple[Path, int]]) -> None:
        """Download these ``(local_path, size)`` in the background, in order, as far as the cache has room."""
        pool = self._process()[1]
        self._pending = {rel: f for rel, f in self._pending.items() if not f.done()}
        for path, size in files:
            rel = self._rel(path)
            if rel in self._pending or self.cache.cached(self._key(rel), size):
                continue
            self._pending[rel] = pool.submit(self.cache.fetch, self._key(rel), size, self._downloader(rel))

    def url_of(self, path: Path) -> str:
        """The URL of the file cached at ``path``."""
        return self.name(self._rel(path))

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.cache.path(self.prefix)).as_posix()

    def _downloader(self, rel: str) -> Any:
        def download(part: Path) -> None:
            self._call(self.name(rel), self.fs.get_file, self.remote_path(rel), str(part))
        return download

    # -- writing (prepare --out URL)

    def staging(self) -> Path:
        """The local directory ``prepare --out URL`` writes before uploading (kept: a rerun resumes from it)."""
        return cache_root(self.cfg) / "staging" / self.prefix

    def publish(self, staging: Path, index: str) -> int:
        """Upload what the URL lacks from ``staging``: data files first, then the small JSON files that name
        them; ``index`` is left for the caller, so no reader sees an index naming a file not there yet.
        What was uploaded is recorded in ``staging``, so an interrupted publish resumes. Returns the uploads."""
        record = staging / PUBLISHED
        done = json.loads(record.read_text()) if record.is_file() else {}
        remote = self._listing()
        files = [p for p in staging.rglob("*") if p.is_file() and p.name not in (index, PUBLISHED)
                 and not p.name.endswith(".tmp")]
        files.sort(key=lambda p: (p.suffix == ".json", p.as_posix()))
        uploaded = 0
        for path in files:
            rel, stat = path.relative_to(staging).as_posix(), path.stat()
            if done.get(rel) == [stat.st_size, stat.st_mtime_ns] and remote.get(rel) == stat.st_size:
                continue
            self.put(path, rel)
            done[rel] = [stat.st_size, stat.st_mtime_ns]
            atomic_write(record, json.dumps(done))
            uploaded += 1
        return uploaded

    def pull(self, staging: Path, suffix: str) -> None:
        """Download the URL's files ending with ``suffix`` that ``staging`` lacks (other slices' entries)."""
        for rel in self._listing():
            if rel.endswith(suffix) and not (staging / rel).exists():
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(staging / rel, self._call(self.name(rel), self.fs.cat_file, self.remote_path(rel)))

    def put(self, path: Path, rel: str) -> None:
        self._call(self.name(rel), self.fs.put_file, str(path), self.remote_path(rel))
        self._sizes = None

    def _listing(self) -> dict[str, int]:
        """:meth:`sizes`, empty when nothing is under the URL yet."""
        self._sizes = None
        try:
            return self.sizes()
        except NotFound:
            return {}

    def check_access(self) -> None:
        """Raise one line unless the URL's bucket answers (endpoint, credentials, permission)."""
        bucket = self.path.split("/", 1)[0]
        try:
            self._call(f"{self.scheme}://{bucket}", self.fs.ls, bucket)
        except StorageError as err:
            where = endpoint(self.cfg.endpoint_url) or "the default AWS endpoint"
            raise StorageError(f"{err} (endpoint: {public(where)})") from None


def cache_root(cfg: StorageConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(tempfile.gettempdir()) / "flanforge-cache"


def open_store(root: str | os.PathLike, storage: StorageConfig | None = None) -> LocalStore | RemoteStore:
    """The store of a shards location: a :class:`RemoteStore` for a URL, else a :class:`LocalStore`."""
    if is_remote(root):
        return RemoteStore(str(root), storage or StorageConfig())
    return LocalStore(root)
