"""Every error flanforge raises on purpose, and the one "did you mean" helper.

A leaf module: it imports nothing of the project, so every layer (``kernels/``,
``model/``, ``mixtures/``, ``launcher/``) may raise these. The CLI prints the
:data:`USER_ERRORS` in one line, without a traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A run config that cannot be used: an unknown key, a wrong type, an impossible value."""


class TaskError(ValueError):
    """A task, template or record that cannot be used; the message names it."""


class UserError(RuntimeError):
    """A mistake in how flanforge was called (paths, run directories, resume)."""


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (e.g. too many non-finite losses); the message says why."""


class WriteFailed(UserError):
    """An output that could not be written whole (a full disk, a file-size limit); nothing partial was left."""


class Interrupted(BaseException):
    """SIGTERM, raised where the process is (as Ctrl-C raises KeyboardInterrupt), so writers clean up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


USER_ERRORS = (UserError, ConfigError, TaskError, TrainingStopped)


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.5, otherwise: str = "") -> str:
    """The hint that follows an unknown ``name`` in an error message.

    ``"; did you mean 'x'?"`` when ``n == 1``, ``"; closest: x, y"`` when more
    names are wanted, and ``otherwise`` (e.g. ``"; valid keys: ..."``) when no
    choice is at least ``cutoff`` similar (:func:`difflib.get_close_matches`).
    """
    near = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=cutoff)
    if not near:
        return otherwise
    return f"; did you mean '{near[0]}'?" if n == 1 else f"; closest: {', '.join(near)}"


def closest_first(name: str, choices: Iterable[str]) -> list[str]:
    """Every choice, the most similar to ``name`` first (ties in name order): for listing all valid names."""
    return sorted(choices, key=lambda c: (-difflib.SequenceMatcher(None, name, c).ratio(), c))


class StorageError(UserError):
    """Data that cannot be read or written where it lives (a URL, a bucket, a cache); the message names
    the URL or path and never a credential."""
