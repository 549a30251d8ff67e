"""The ``storage:`` section of a run config: where remote data is cached, how it is fetched.

Credentials are never a key here: they come from the standard places (the
AWS environment variables, ``~/.aws`` profiles, an instance role), so the
config saved in a run directory holds none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from flanforge.errors import ConfigError
from flanforge.sizes import parse_bytes


@dataclass
class StorageConfig:
    """Remote shards (``mixture.shards_dir=s3://...``) and their local cache. Every key may change on resume."""

    endpoint_url: Optional[str] = None
    """An S3-compatible endpoint (MinIO, Ceph); ``None``: ``AWS_ENDPOINT_URL`` or AWS itself."""
    cache_dir: Optional[str] = None
    """Local directory remote shards are cached in, shared by the ranks of a node (one download per node);
    ``None``: ``$TMPDIR/flanforge-cache``."""
    cache_limit: int | str = "20GiB"
    """Bytes the cache may hold (a number, or ``20GiB``, ``500MB``); least recently used shards are evicted, never one
    a rank is reading."""
    read_ahead: int = 2
    """Blocks of its own stream a consumer downloads ahead of the one it packs."""
    download_workers: int = 4
    """Parallel downloads per process."""
    retries: int = 5
    """Retries of a transient error (5xx, throttling, timeout, reset) before the run stops naming the URL."""
    timeout: float = 60.0
    """Seconds a request may wait to connect or for data before it counts as failed (and is retried)."""
    retry_backoff: float = 0.5
    """Seconds before the first retry; doubled each time (with jitter), at most 30 s."""

    def __post_init__(self) -> None:
        self.cache_bytes()
        for key, minimum in (("read_ahead", 0), ("download_workers", 1), ("retries", 0)):
            if getattr(self, key) < minimum:
                raise ConfigError(f"storage.{key} must be at least {minimum}, got {getattr(self, key)}")
        if self.retry_backoff < 0 or self.timeout <= 0:
            raise ConfigError(f"storage.retry_backoff must be >= 0 and storage.timeout > 0, got "
                              f"{self.retry_backoff} and {self.timeout}")

    def cache_bytes(self) -> int:
        if isinstance(self.cache_limit, int):
            if self.cache_limit < 1:
                raise ConfigError(f"storage.cache_limit must be at least 1 byte, got {self.cache_limit}")
            return self.cache_limit
        return parse_bytes(self.cache_limit, "storage.cache_limit")
