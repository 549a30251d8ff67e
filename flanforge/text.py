"""The one reader of user text: task data, templates, eval suite files, configs.

UTF-8, with or without a byte-order mark, unless the file's task (``encoding:``
in a task YAML or a mixture member) or ``flanforge eval --encoding`` declares
another. Bytes that do not decode are a :class:`TextDecodeError` naming the
file, the line, the byte offset and the bytes themselves, and saying how to
declare another encoding.
"""

from __future__ import annotations

import codecs
import functools
from pathlib import Path

from flanforge.errors import TaskError

DECLARE = "declare its encoding (`encoding: cp1252` in the task YAML or mixture member, or `flanforge eval --encoding cp1252`)"


class TextDecodeError(TaskError):
    """Bytes of a user file that are not text in its encoding; ``problem`` is the message without the place."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.problem = problem


def check_encoding(name: object, what: str = "encoding") -> str:
    """``name`` if Python knows it as a text encoding, else a TaskError naming ``what``."""
    try:
        codecs.lookup(name)  # type: ignore[arg-type]
    except (LookupError, TypeError):
        raise TaskError(f"{what}: {name!r} is not a known text encoding (e.g. utf-8, cp1252, latin-1)") from None
    return str(name)


def decode(data: bytes, where: str, encoding: str | None = None, *, line: int = 1, offset: int = 0,
           declarable: bool = True) -> str:
    """``data`` as text: UTF-8 without its BOM, or ``encoding`` (checked with :func:`check_encoding`).

    ``where`` names the file; ``line`` and ``offset`` are where ``data`` starts in it (a caller that
    decodes line by line passes them), so the error names the file's own line and byte offset.
    ``declarable``: the error says how to declare another encoding (False: the file must be UTF-8, as a
    config, a task YAML itself or a results.json must)."""
    codec, label = _codec(encoding)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        bad = data[err.start:max(err.end, err.start + 1)]
        at = line + data.count(b"\n", 0, err.start)
        how = f" or {DECLARE}" if declarable else ""
        raise TextDecodeError(f"{where}:{at}", f"non-{label} bytes {bad!r} at byte {offset + err.start} "
                              f"({err.reason}); save the file as UTF-8{how}") from None


@functools.lru_cache(maxsize=None)
def _codec(encoding: str | None) -> tuple[str, str]:
    """The codec that decodes ``encoding`` (UTF-8: without its BOM) and its name in messages."""
    if encoding is None or codecs.lookup(encoding).name == "utf-8":
        return "utf-8-sig", "UTF-8"
    return encoding, encoding


def read_text(path: str | Path, encoding: str | None = None, *, declarable: bool = True) -> str:
    """The text of the user file ``path`` (see :func:`decode`); a missing or unreadable file is a TaskError."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TaskError(f"{path}: cannot read: {err.strerror or err}") from None
    return decode(data, str(path), encoding, declarable=declarable)
