"""Where data lives: local paths and fsspec URLs, the filesystem of a URL, and errors that name no secret.

A path with a scheme (``s3://bucket/prefix``, ``gs://...``, ``az://...``,
``hf://...``) is remote and read through fsspec; anything else (including
``file://``) is a local path, read as it always was. The filesystem's own
retries are turned off: :mod:`flanforge.mixtures.storage.retry` retries, counts
and reports instead.
"""

from __future__ import annotations

import os
import re
from typing import Any
from flanforge.errors import StorageError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS",
                    "AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING", "HF_TOKEN")


def scheme(path: str | os.PathLike) -> str | None:
    """The URL scheme of a remote location; None for a local path (``file://`` included)."""
    match = _SCHEME.match(str(path))
    if match is None or match.group(1).lower() in ("file", "local"):
        return None
    return match.group(1).lower()


def is_remote(path: str | os.PathLike) -> bool:
    return scheme(path) is not None


def local_path(path: str | os.PathLike) -> str:
    """A local location without its ``file://`` prefix."""
    text = str(path)
    return text[len("file://"):] if text.startswith("file://") else text


def public(text: str) -> str:
    """``text`` with a URL's user-info (``s3://KEY:SECRET@bucket``) and every credential variable's value removed."""
    text = _USERINFO.sub(r"\1", str(text))
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def endpoint(endpoint_url: str | None) -> str | None:
    """The S3 endpoint in force: the config's, else ``AWS_ENDPOINT_URL``, else None (AWS itself)."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def filesystem(url: str, endpoint_url: str | None = None, timeout: float = 60.0) -> Any:
    """The fsspec filesystem of ``url``'s scheme; an unknown scheme, or one whose package is missing, is a
    :class:`StorageError` naming the scheme and the package that adds it."""
    import fsspec
    from fsspec.registry import known_implementations

    proto = scheme(url)
    if proto is None:
        raise StorageError(f"{public(url)}: not a URL")
    try:
        cls = fsspec.get_filesystem_class(proto)
    except ValueError:
        known = sorted(known_implementations)
        raise StorageError(f"{public(url)}: unknown URL scheme '{proto}'; fsspec knows {', '.join(known)}") from None
    except ImportError:
        hint = known_implementations.get(proto, {}).get("err", f"install the fsspec package for '{proto}'")
        raise StorageError(f"{public(url)}: the URL scheme '{proto}' needs a package that is not installed: "
                           f"{' '.join(str(hint).split())}") from None
    if proto not in ("s3", "s3a"):
        return cls(skip_instance_cache=True)
    # one attempt per call (botocore and s3fs would otherwise retry unseen); timeouts end a hung request
    fs = cls(skip_instance_cache=True, endpoint_url=endpoint(endpoint_url), config_kwargs={
        "retries": {"total_max_attempts": 1}, "connect_timeout": timeout, "read_timeout": timeout})
    fs.retries = 1
    return fs


def split(url: str) -> tuple[str, str]:
    """``(scheme, path without the scheme)``: ``s3://b/p/`` -> ``("s3", "b/p")``."""
    proto = scheme(url)
    assert proto is not None
    return proto, str(url)[len(proto) + 3:].rstrip("/")
