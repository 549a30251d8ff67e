"""The process group of a rank: torch's env:// variables from its layout, DeepSpeed's init, free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from flanforge.launcher.ranks.layout import RankLayout


def export_torch_env(layout: RankLayout, env: MutableMapping[str, str] = os.environ) -> None:
    """Set the variables ``torch.distributed``'s env:// init (and so
    ``deepspeed.init_distributed()``) reads, e.g. for ranks started by ``srun``."""
    env.update(
        RANK=str(layout.rank),
        WORLD_SIZE=str(layout.world_size),
        LOCAL_RANK=str(layout.local_rank),
        LOCAL_WORLD_SIZE=str(layout.local_world_size),
        MASTER_ADDR=layout.master_addr,
        MASTER_PORT=str(layout.master_port),
    )


def init_process_group() -> None:
    """``deepspeed.init_distributed`` with NCCL on GPUs and gloo on CPUs.

    On CPUs DeepSpeed would also JIT-build its shared-memory all-reduce op (about a
    minute on first use, behind a lock file a killed build leaves behind) and create
    two 66 MB buffers per rank in /dev/shm that it never unlinks: each run left
    132 MB of RAM behind until a test suite filled the machine's memory. Only
    DeepSpeed's inference all-reduce uses that op, so training skips it and its
    all-reduces go through gloo.
    """
    import deepspeed
    import deepspeed.ops
    import torch

    if torch.cuda.is_available():
        deepspeed.init_distributed(dist_backend="nccl")
        return
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo")


def free_port(host: str = "", port: int = 0) -> int:
    """A TCP port free on this host right now: ``port``, or any for 0 (for single-node
    launches; another process may take it before it is used). ``OSError`` if ``port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As torch's TCPStore binds: a port a finished run left in TIME_WAIT is free, one listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return sock.getsockname()[1]
