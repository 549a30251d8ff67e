"""One run per output directory: an exclusive lock on ``<output_dir>/.lock`` naming its holder.

The lock is a ``flock`` on the file, held by the process that owns the run (the
``flanforge train`` that starts the ranks on node 0, or global rank 0 when the
ranks were started by another launcher). The kernel drops it when that process
dies, however it dies, so a lock left by a killed run or a requeued Slurm job
never blocks a restart; the file's text (host, pid, start time) only says who
holds it. ``slurm/common.sh`` takes the same lock in the batch script for the
life of the job: a ``flanforge train`` of that same job (``SLURM_JOB_ID``)
runs under it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from flanforge.errors import UserError
from flanforge.launcher.training.rundir import RunDir

HELD_ENV = "FLANFORGE_RUN_LOCK_HELD"
"""Set in the ranks' environment by the launcher that holds the lock: the ranks do not take it again."""

_held: dict[Path, IO[str]] = {}  # lock path -> the open file whose flock this process holds


def holder(run_dir: RunDir) -> str:
    """What the lock file says about its holder ('?' when it says nothing)."""
    try:
        return run_dir.lock.read_text().strip().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return "?"


def acquire(run_dir: RunDir) -> None:
    """Take the run's lock for the life of this process, or raise :class:`UserError` naming the holder.

    Idempotent within a process. A lock held by the batch script of this very
    Slurm job counts as ours.
    """
    path = run_dir.lock.resolve()
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        held_by = holder(run_dir)
        job = os.environ.get("SLURM_JOB_ID")
        if job and held_by.startswith(f"job {job} "):
            return  # the batch script of this job holds it (slurm/common.sh)
        raise UserError(
            f"output_dir {run_dir.root} is locked by another run ({held_by}); wait for it to end, "
            f"stop it, or choose another output_dir"
        ) from None
    fh.seek(0)
    fh.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
    fh.flush()
    _held[path] = fh


def release(run_dir: RunDir) -> None:
    """Drop the lock if this process holds it (exiting drops it too)."""
    fh = _held.pop(run_dir.lock.resolve(), None)
    if fh is not None:
        fh.close()


def acquire_for_rank(run_dir: RunDir, rank: int) -> None:
    """In a rank: global rank 0 takes the lock unless the launcher that started the ranks holds it."""
    if rank == 0 and not os.environ.get(HELD_ENV):
        acquire(run_dir)
