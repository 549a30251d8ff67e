"""Writing files so that a reader (or a crash) never sees half of one.

A leaf module: it imports nothing of the project.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Writes ``<path>.<random>.tmp`` (a name of its own, so concurrent writers of
    one path never share it), fsyncs it, renames it over ``path`` and fsyncs
    the directory, so after a crash ``path`` holds either the old or the new
    content, never a prefix, and the rename itself survives a power loss.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory ``path`` (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
