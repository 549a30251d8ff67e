"""Transient storage errors retried with backoff, and counted; the others reported in one line.

Transient: a server error (HTTP 5xx), throttling, a timeout, a reset or refused
connection, a download cut short. Not transient: a missing object or bucket,
denied access, missing credentials; they are reported at once. Either way the
error names the URL, never a credential (:func:`urls.public`).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, TypeVar

from flanforge.errors import StorageError
from flanforge.mixtures.storage.urls import public

T = TypeVar("T")
MAX_DELAY = 30.0
_PERMANENT_NAMES = ("NoCredentialsError", "PartialCredentialsError", "NoSuchBucket", "AccessDenied",
                    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ParamValidationError")
_TRANSPORT_PACKAGES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "google", "azure")


class NotFound(StorageError):
    """The object, prefix or bucket a URL names does not exist."""


class CutShort(OSError):
    """A download that ended before the object's recorded size (a reset connection): transient."""


def transient(err: BaseException) -> bool:
    """Worth another try: the same request may succeed (see the module docstring)."""
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if any(name in type(err).__name__ or name in str(err) for name in _PERMANENT_NAMES):
        return False
    if isinstance(err, (OSError, TimeoutError, ConnectionError)):  # s3fs reports 5xx and throttling as OSError
        return True
    return type(err).__module__.split(".")[0] in _TRANSPORT_PACKAGES


def reason(err: BaseException) -> str:
    """What went wrong, in one line without a credential."""
    if isinstance(err, FileNotFoundError):
        return "not found"
    if isinstance(err, PermissionError):
        return "access denied (check the credentials and the bucket's policy)"
    text = " ".join(str(err).split()) or type(err).__name__
    return public(f"{type(err).__name__}: {text}")[:300]


class Retrier:
    """Calls with up to ``retries`` retries of transient errors, ``backoff`` seconds doubling (with jitter);
    ``count`` is the retries made so far (thread-safe)."""

    def __init__(self, retries: int, backoff: float):
        self.retries, self.backoff = retries, backoff
        self.count = 0
        self._lock = threading.Lock()
        self._jitter = random.Random()  # its own generator: the training RNG states never see a retry

    def call(self, fn: Callable[[], T], url: str) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - classified, then retried or reported
                if not transient(err):
                    kind = NotFound if isinstance(err, FileNotFoundError) else StorageError
                    raise kind(f"{public(url)}: {reason(err)}") from None
                if attempt == self.retries:
                    raise StorageError(f"{public(url)}: still failing after {self.retries} retries: "
                                       f"{reason(err)}") from None
            with self._lock:
                self.count += 1
            time.sleep(min(MAX_DELAY, self.backoff * 2 ** attempt) * (0.5 + 0.5 * self._jitter.random()))
            attempt += 1
