"""Checks of command-line arguments that every command shares, made before any work.

An option given twice (``--split a --split b``) and an override key given twice
(``k=1 k=2``) are errors naming both occurrences (argparse would let the last
one win silently); numbers out of range and output locations that cannot be
written are errors naming the flag.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from flanforge.errors import UserError


class _Once(argparse.Action):
    """Mixed into an option's action: a second occurrence is a :class:`UserError` naming both."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        seen = namespace.__dict__.setdefault("_given", {})
        given = f"{option_string} {_shown(values)}".strip()
        if self.dest in seen:
            raise UserError(f"{option_string} is given twice ({seen[self.dest]}, then {given}); give it once")
        seen[self.dest] = given
        super().__call__(parser, namespace, values, option_string)


def _shown(values: Any) -> str:
    return " ".join(map(str, values)) if isinstance(values, list) else "" if values is None else str(values)


def forbid_repeats(parser: argparse.ArgumentParser) -> None:
    """Make every option of ``parser`` (but help, and options meant to repeat) refuse a second occurrence."""
    for action in parser._actions:  # argparse has no public way to list them
        if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._AppendAction,
                                                             argparse._CountAction, _Once)):
            action.__class__ = type(f"Once{type(action).__name__}", (_Once, type(action)), {})


def forbid_repeated_keys(overrides: Sequence[str]) -> None:
    """Two ``key=value`` overrides of one key are an error naming both."""
    first: dict[str, str] = {}
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key in first:
            raise UserError(f"override key '{key}' is given twice ({first[key]}, then {override}); give it once")
        first[key] = override


def at_least(value: int | None, minimum: int, flag: str) -> None:
    """``value`` (None: not given) is at least ``minimum``, else a UserError naming ``flag``."""
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be at least {minimum}, got {value}")


def writable_dir(path: str | Path, flag: str) -> Path:
    """``path`` as a directory that is or can be created and written: a regular file there, a parent that is a
    file, or a place where nothing can be created is a UserError naming ``flag``. The check writes (and
    removes) a probe file in the nearest existing directory: permissions alone do not say (root, read-only mounts)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a directory")
    existing = next(p for p in (path, *path.parents, Path(".")) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".flanforge-probe-", dir=existing)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write in {existing} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)
    return path
