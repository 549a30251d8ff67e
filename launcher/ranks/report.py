"""How a failed command reports: one line for a user error (exit 2), a traceback for a bug (exit 1),
one line for an interrupted one (exit 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM).

Ranks started by ``flanforge train`` on one node share an error directory
(``ERROR_DIR_ENV``, that node's launcher's temp dir); once connected, the ranks
of all nodes also share one error file of the launch in the run directory
(:func:`share_errors`: ``<output_dir>/.errors/<launch id>``, which every node
sees as it sees the checkpoints). The first rank to fail claims both and prints
its error; a rank that fails after it (typically a peer-connection error because
the first one is gone), on any node, exits quietly with the first one's status
and copies the claim into its node's directory. Each node's launcher prints the
claimed line again as the last line of its output and exits with its status, so
the user sees the culprit first and last on every node.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

ERROR_DIR_ENV = "FLANFORGE_ERROR_DIR"
ERROR_FILE = "first-error"
USER_ERROR, BUG = 2, 1
PEER_WAIT_S = 3.0
"""How long a rank that failed with an unexpected error waits for another rank's claim (which explains it)."""
_SHARED: list[Path] = []
"""The launch's error file in the run directory, once the ranks are connected (:func:`share_errors`)."""


def share_errors(path: Path) -> None:
    """Claim failures in ``path`` too (a file in the run directory every node of the launch names alike)."""
    _SHARED[:] = [path]


def _error_file(root: str | None = None) -> Path | None:
    root = root or os.environ.get(ERROR_DIR_ENV)
    return Path(root) / ERROR_FILE if root else None


def _claim_at(path: Path, status: int, line: str) -> tuple[int, str] | None:
    """Claim ``path`` for this failure; None when it was free, else the claim it holds. Written
    aside and linked into place: atomic (on NFS too), and never read half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f"{path.name}.{os.getpid()}")
    aside.write_text(f"{status}\n{line}\n")
    try:
        os.link(aside, path)
    except FileExistsError:
        return _read(path) or (status, line)
    finally:
        aside.unlink()
    return None


def claim(status: int, line: str) -> tuple[int, str] | None:
    """Record this failure as the launch's first: None when it is, else the one that came first
    (another rank's), which this node's error directory then holds as well."""
    first = None
    for path in (*_SHARED, _error_file()):
        if path is not None:
            first = _claim_at(path, *(first or (status, line))) or first
    return first


def _read(path: Path) -> tuple[int, str] | None:
    try:
        status, line = path.read_text().split("\n", 1)
        return int(status), line.strip()
    except (OSError, ValueError):
        return None


def first_error(wait_s: float = 0.0, root: str | None = None) -> tuple[int, str] | None:
    """``(status, line)`` a rank claimed (in ``root``; default: the launch's shared file and this
    rank's error directory), waiting up to ``wait_s`` for one to appear."""
    paths = [p for p in ([_error_file(root)] if root else [*_SHARED, _error_file()]) if p is not None]
    deadline = time.monotonic() + wait_s
    while paths:
        found = next(filter(None, map(_read, paths)), None)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
    return None


def interrupted(command: str, signum: int) -> int:
    """Report a command stopped by ``signum`` (its writers removed what they had not finished); 128 + signum."""
    name = signal.Signals(signum).name
    print(f"flanforge {command}: interrupted ({name}); nothing partial left, re-run to continue",
          file=sys.stderr, flush=True)
    return 128 + signum


def fail(command: str, err: BaseException, user_error: bool) -> int:
    """Report ``err`` (caught at the top of ``command``) and return the exit status."""
    line = f"flanforge {command}: error: {err}" if user_error else (
        f"flanforge {command}: internal error: {type(err).__name__}: {err}")
    line = " ".join(line.split())  # one line, whatever the message held
    if not user_error:
        other = first_error(PEER_WAIT_S)
        if other is not None:  # another rank failed first; this is the echo of it
            claim(*other)  # ... which this node's launcher shows last
            return other[0]
    status = USER_ERROR if user_error else BUG
    earlier = claim(status, line)
    if earlier is not None:
        return earlier[0]
    if not user_error:
        traceback.print_exception(err, file=sys.stderr)
    print(line, file=sys.stderr, flush=True)
    return status
