"""Writing files so that a reader (or a crash, a signal, a full disk) never sees half of one.

Every output flanforge publishes is written under a temporary name next to its
final one and renamed into place last: one file (:class:`AtomicFile`,
:func:`atomic_write`), several that belong together (:func:`publish`), or a whole
directory (:func:`atomic_directory`). Whatever stops the writer first (an
exception, Ctrl-C, SIGTERM, a full disk) removes the temporary and leaves the
previous content, or nothing, in place. A full disk (``ENOSPC``, ``EDQUOT``) or a
file-size limit (``EFBIG``: ``ulimit -f``; Python ignores ``SIGXFSZ`` at start-up,
so the write fails instead of killing the process) is a :class:`WriteFailed`
naming the path and the bytes. A writer that reports no errno (``torch.save``'s
C++ writer: a ``RuntimeError``, "file write failed") is judged after it failed:
a file at the size limit, or a disk with under :data:`LOW_SPACE` free, is the
same :class:`WriteFailed`; anything else stays the writer's error.

A leaf module: it imports nothing of the project but ``flanforge.errors``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from flanforge.errors import WriteFailed

LOW_SPACE = 2**20
"""Free bytes under which a failed write without an errno is put down to a full disk."""
_NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file size limit exceeded (ulimit -f)"}


@contextlib.contextmanager
def reporting_full_disk(path: str | Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk or a file-size limit met while writing ``path`` into a :class:`WriteFailed`."""
    try:
        yield
    except OSError as err:
        if err.errno not in _NO_ROOM:
            raise
        bytes_ = f"; it needed at least {needed} bytes" if needed is not None else ""
        raise WriteFailed(f"{path}: {_NO_ROOM[err.errno]}{bytes_}; nothing partial was left") from None
    except RuntimeError:  # torch.save's writer: no errno
        reason = no_room(Path(path))
        if reason is None:
            raise
        raise WriteFailed(f"{path}: {reason}; nothing partial was left") from None


def no_room(path: Path) -> str | None:
    """Why writing ``path`` (a file or a directory of them) may have failed for want of room: a file there
    at the file-size limit (``ulimit -f``), or fewer than :data:`LOW_SPACE` bytes free on its disk; None if
    neither."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    files = [path] if path.is_file() else list(path.rglob("*")) if path.is_dir() else []
    if soft != resource.RLIM_INFINITY and any(f.is_file() and f.stat().st_size >= soft for f in files):
        return _NO_ROOM[errno.EFBIG]
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and shutil.disk_usage(existing).free < LOW_SPACE:
        return _NO_ROOM[errno.ENOSPC]
    return None


class AtomicFile:
    """A binary file written at ``<dir>/.<name>.<random>.tmp`` and renamed to ``path`` by :meth:`publish`.

    As a context manager it publishes on a clean exit and :meth:`discard`\\ s on any
    other (an exception, KeyboardInterrupt). ``bytes`` counts what was written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        self.bytes = 0
        with reporting_full_disk(self.path):
            self.file = open(self.tmp, "wb")

    def write(self, data: bytes | str) -> int:
        data = data.encode() if isinstance(data, str) else data
        with reporting_full_disk(self.path, self.bytes + len(data)):
            self.file.write(data)
        self.bytes += len(data)
        return len(data)

    def finish(self) -> None:
        """Flush and fsync the temporary (still under its own name)."""
        if not self.file.closed:
            with reporting_full_disk(self.path, self.bytes):
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()

    def publish(self) -> None:
        self.finish()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()  # may fail flushing onto a full disk: the temporary goes anyway
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            try:
                self.publish()
                return
            except BaseException:
                self.discard()
                raise
        self.discard()


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: after a crash ``path`` holds the old
    or the new content, never a prefix, and the rename itself survives a power loss."""
    with AtomicFile(path) as out:
        out.write(data)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (delivered on exit) while a few renames must all happen or none."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def publish(files: Sequence[AtomicFile]) -> None:
    """Rename finished files into place, in order (the one a reader takes as "complete" last), or
    discard them all when one cannot be finished. Signals wait until every rename is done."""
    try:
        for f in files:
            f.finish()
    except BaseException:
        for f in files:
            f.discard()
        raise
    with signals_held():
        for f in files:
            os.replace(f.tmp, f.path)
        if files:
            fsync_dir(files[0].path.parent)


@contextlib.contextmanager
def atomic_directory(out: str | Path, replace: bool = False) -> Iterator[Path]:
    """A fresh directory next to ``out`` to fill; renamed to ``out`` on a clean exit (an existing
    ``out`` removed first when ``replace``), removed with its content on any other."""
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with reporting_full_disk(out):
            yield tmp
        _default_permissions(tmp)
        with signals_held():
            if replace and out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default_permissions(directory: Path) -> None:
    """mkdtemp makes a private directory; give it (and its files) the modes a plain mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory ``path`` (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
