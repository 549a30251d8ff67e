"""How a failed command reports: one line for a user error (exit 2), a traceback for a bug (exit 1).

Ranks started by ``flanforge train`` share an error directory (``ERROR_DIR_ENV``,
the launcher's temp dir). The first rank to fail claims it and prints its
error; a rank that fails after it (typically a peer-connection error because
the first one is gone) exits quietly with the first one's status. The launcher
prints the claimed line again as the last line of the run and exits with its
status, so the user sees the culprit first and last.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

ERROR_DIR_ENV = "FLANFORGE_ERROR_DIR"
ERROR_FILE = "first-error"
USER_ERROR, BUG = 2, 1
PEER_WAIT_S = 3.0
"""How long a rank that failed with an unexpected error waits for another rank's claim (which explains it)."""


def _error_file(root: str | None = None) -> Path | None:
    root = root or os.environ.get(ERROR_DIR_ENV)
    return Path(root) / ERROR_FILE if root else None


def claim(status: int, line: str) -> bool:
    """Record this failure as the run's first; False when another rank's came first."""
    path = _error_file()
    if path is None:
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{status}\n{line}\n")
    return True


def first_error(wait_s: float = 0.0, root: str | None = None) -> tuple[int, str] | None:
    """``(status, line)`` a rank claimed (in ``root``, default: this rank's error directory),
    waiting up to ``wait_s`` for one to appear."""
    path = _error_file(root)
    deadline = time.monotonic() + wait_s
    while path is not None:
        try:
            status, line = path.read_text().split("\n", 1)
            return int(status), line.strip()
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return None


def fail(command: str, err: BaseException, user_error: bool) -> int:
    """Report ``err`` (caught at the top of ``command``) and return the exit status."""
    line = f"flanforge {command}: error: {err}" if user_error else (
        f"flanforge {command}: internal error: {type(err).__name__}: {err}")
    line = " ".join(line.split())  # one line, whatever the message held
    if not user_error:
        other = first_error(PEER_WAIT_S)
        if other is not None:
            return other[0]  # another rank failed first; this is the echo of it
    if not claim(USER_ERROR if user_error else BUG, line):
        return first_error()[0]  # type: ignore[index]
    if not user_error:
        traceback.print_exception(err, file=sys.stderr)
    print(line, file=sys.stderr, flush=True)
    return USER_ERROR if user_error else BUG
