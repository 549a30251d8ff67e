"""Task and mixture names, checked once where they are declared (``Task`` and ``Mixture``).

A name is NFC-normalised (two spellings of "é" are one name), holds no
control, format (zero-width), private-use, unassigned, surrogate or line/paragraph
separator character and no space but the ASCII one, does not start or end
with a space, and takes at most :data:`MAX_NAME_BYTES` bytes in UTF-8: a task's
name becomes its shard directory's name (``prepare``; file systems allow 255
bytes, and a name that is not path-safe gains a 9-byte hash) and part of its
TensorBoard tags. Two declarations equal after normalisation are the same
name, so the registries' and mixtures' duplicate checks name both.
"""

from __future__ import annotations

import unicodedata

from flanforge.errors import TaskError

MAX_NAME_BYTES = 200
INVISIBLE = ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp")
"""Unicode categories a name may not hold: they print as nothing (or break the line)."""


def checked_name(name: object, kind: str) -> str:
    """``name`` NFC-normalised, or a TaskError saying what is wrong with it (``kind``: task, mixture)."""
    if not isinstance(name, str) or not name.strip():
        raise TaskError(f"a {kind} name must be non-empty text, got {name!r}")
    name = unicodedata.normalize("NFC", name)
    for char in name:
        if unicodedata.category(char) in INVISIBLE or (char.isspace() and char != " "):
            code = f"U+{ord(char):04X}"
            raise TaskError(f"{kind} name {name!r} holds {unicodedata.name(char, code)} ({code}), an invisible or "
                            "control character; names must read as they are")
    if name != name.strip(" "):
        raise TaskError(f"{kind} name {name!r} starts or ends with a space")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise TaskError(f"{kind} name {name[:40]!r}... is {size} bytes in UTF-8, more than {MAX_NAME_BYTES} "
                        "(names become shard directory names and TensorBoard tags)")
    return name
