"""How every process that may hold a process group ends: training and evaluation ranks, test
probes, benchmark ranks and the HF Trainer baseline all leave through :func:`end_rank`.

Left to the interpreter's own teardown, a rank whose work is done can still abort: gloo's
worker threads, and the tensors their pending work holds, are destroyed during
finalization, and ``std::terminate`` ends the process ("terminate called without an
active exception", exit -6; pytorch/pytorch#179291 describes the race). The launcher,
and Slurm, then report a failed job for a run that finished. Destroying the process
group first makes it rarer, not impossible (a two-rank evaluation that did so still
aborted in CI), so the path below never reaches that teardown:

1. a successful rank waits for its peers (a barrier: none destroys the group under a
   peer still inside a collective), then every process group is destroyed;
2. the interpreter's exit handlers run (``atexit``: multiprocessing reaps DataLoader
   workers and pools, ``weakref.finalize`` and tempfile clean-ups run, logging flushes);
3. the standard streams are flushed and the process ends with ``os._exit(code)``.

A failed rank skips step 1: its peers may be inside another collective and would never
reach a barrier, and the launcher ends them when this rank exits with its status.
Components with workers or open files (the data loader, the TensorBoard writer) are
closed by their owner before this, on success and failure alike.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import traceback
from typing import Callable, NoReturn


def end_rank(code: int = 0) -> NoReturn:
    """End this process with exit status ``code``, never through the interpreter's teardown."""
    try:
        import torch.distributed as dist

        if code == 0 and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except BaseException:  # a peer gone at the last barrier: this rank's work is still done, say so
        traceback.print_exc()
        code = code or 1
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to say there
            pass
    os._exit(code)


def run_rank(main: Callable[[], int | None]) -> NoReturn:
    """Run a rank's ``main`` and end through :func:`end_rank`: its return value is the exit status,
    an exception prints its traceback and exits 1 (scripts whose ranks are not ``flanforge``
    commands: test probes, benchmark ranks)."""
    try:
        code = main() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    end_rank(code)
