"""Fault injection for the tests, in one place: each hook reads one environment variable and does
nothing when it is unset (a user's run never sets them).

===================================  ================================================================================
``FLANFORGE_INJECT_ERROR=R``         rank R fails with a user error once the ranks are connected
``FLANFORGE_INJECT_NONFINITE=3,4``   the losses of steps 3 and 4 are NaN (the non-finite guard)
``FLANFORGE_KILL_IN_SAVE=8``         every rank SIGKILLs itself in the middle of step 8's save
``FLANFORGE_SIGNAL_MID_WRITE=TERM``  ``export`` and ``eval`` send themselves SIGTERM (or INT) with outputs half-written
===================================  ================================================================================
"""

from __future__ import annotations

import os
import signal

from flanforge.errors import UserError


def inject_error(rank: int) -> None:
    if os.environ.get("FLANFORGE_INJECT_ERROR") == str(rank):
        raise UserError(f"injected error on rank {rank} (FLANFORGE_INJECT_ERROR)")


def nonfinite_steps() -> set[int]:
    raw = os.environ.get("FLANFORGE_INJECT_NONFINITE", "")
    return {int(s) for s in raw.split(",") if s.strip()}


def kill_in_save(step: int) -> None:
    """Called between a save's shards and its ``trainer.json``: the save is left incomplete."""
    if os.environ.get("FLANFORGE_KILL_IN_SAVE") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def signal_mid_write() -> None:
    """Called where an output is half-written (export: the weights, not yet the tokenizer; eval: the
    predictions, not yet the report): a real signal, at a known point."""
    name = os.environ.get("FLANFORGE_SIGNAL_MID_WRITE")
    if name:
        os.kill(os.getpid(), signal.Signals[f"SIG{name}"])
