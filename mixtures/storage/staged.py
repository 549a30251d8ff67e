"""Raw sources on object storage, staged whole into the node's cache for the file readers.

A task's ``source.path`` (JSONL, CSV, TSV, parquet, a saved HF dataset), a NIV2 folder, a Flan-JSONL
file or a Flan collection directory may be a URL (``s3://bucket/key``; any fsspec scheme whose package
is installed). :func:`staged` copies the object, or every object under the prefix, to
``<cache_dir>/sources/<hash of the URL>/<name>`` and returns that local path, so every reader keeps
reading local files; the ``hf`` source type streams instead (``mixtures/sources/hf_stream.py``).

One copy per node: the ranks (and ``prepare``'s workers) stage under one lock, and the listing the copy
was made from (each object's size) is kept beside it; a later call with the same listing uses the copy,
a changed listing (an object added, removed or resized) stages it again. A copy is made under a
temporary name, checked against the listing's sizes, and renamed into place. Endpoint, retries and
cache directory: the ``storage:`` defaults and ``AWS_ENDPOINT_URL`` (credentials from the standard
places, never named in errors); source copies are not counted against ``storage.cache_limit``, which
bounds the shards' cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path, PurePosixPath

from flanforge.errors import StorageError
from flanforge.files import atomic_write
from flanforge.mixtures.storage.cache import file_lock
from flanforge.mixtures.storage.config import StorageConfig
from flanforge.mixtures.storage.retry import Retrier
from flanforge.mixtures.storage.store import cache_root
from flanforge.mixtures.storage.urls import filesystem, public, split

LISTING = "listing.json"


def staged(url: str, cfg: StorageConfig | None = None) -> Path:
    """The local copy of the object or prefix ``url`` (see the module doc)."""
    cfg = cfg or StorageConfig()
    fs = filesystem(url, cfg.endpoint_url, cfg.timeout)
    retrier = Retrier(cfg.retries, cfg.retry_backoff)
    _, path = split(url)
    listing = _listing(fs, retrier, url, path)
    root = cache_root(cfg) / "sources" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    local = root / PurePosixPath(path).name
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        record = root / LISTING
        if local.exists() and record.is_file() and json.loads(record.read_text()) == listing:
            return local
        tmp = root / f".{uuid.uuid4().hex[:12]}.tmp"
        try:
            for rel, size in listing.items():
                target = tmp / rel if rel else tmp
                target.parent.mkdir(parents=True, exist_ok=True)
                remote = f"{path}/{rel}" if rel else path
                name = f"{url.rstrip('/')}/{rel}" if rel else url
                retrier.call(lambda: fs.get_file(remote, str(target)), name)
                if target.stat().st_size != size:
                    raise StorageError(f"{public(name)}: {target.stat().st_size} bytes arrived, the listing says {size}")
            if local.is_dir():
                shutil.rmtree(local)
            tmp.replace(local)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp)
            tmp.unlink(missing_ok=True)
        atomic_write(record, json.dumps(listing))
    return local


def _listing(fs, retrier: Retrier, url: str, path: str) -> dict[str, int]:
    """``{"": size}`` for one object, ``{relative name: size}`` for every object under a prefix."""
    info = retrier.call(lambda: fs.info(path), url)
    if info.get("type") != "directory":
        return {"": int(info["size"])}
    found = retrier.call(lambda: fs.find(path, detail=True), url)
    listing = {PurePosixPath(p).relative_to(path).as_posix(): int(d["size"]) for p, d in sorted(found.items())}
    if not listing:
        raise StorageError(f"{public(url)}: no objects under this prefix")
    return listing
