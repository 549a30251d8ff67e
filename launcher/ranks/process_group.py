"""The start of a rank (layout, device, process group, in that order) and its process group: torch's
env:// variables from its layout, DeepSpeed's init; free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from flanforge.launcher.ranks.devices import bind_device
from flanforge.launcher.ranks.layout import RankLayout, read_rank_layout


def start_rank(requested_device: str = "auto", group_if_alone: bool = True):
    """``(layout, device)`` of this rank, started in the one order that works under NCCL: the layout from
    its launcher, its device bound (:func:`~flanforge.launcher.ranks.devices.bind_device`), and only then
    its process group (none for a process alone unless ``group_if_alone``). Every rank process starts here:
    training, evaluation, the test probes and the benchmark ranks."""
    layout = read_rank_layout()
    device = bind_device(layout, requested_device)
    if layout.world_size > 1 or group_if_alone:
        export_torch_env(layout)
        init_process_group(device)
    return layout, device


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


def init_process_group(device) -> None:
    """``deepspeed.init_distributed`` with NCCL on GPUs and gloo on CPUs; ``device`` is the rank's bound
    device (``launcher/ranks/devices.py``), given to torch's NCCL group from its creation (``device_id``).

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

    if device.type == "cuda":
        torch.distributed.init_process_group("nccl", device_id=device)  # DeepSpeed then takes this group
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
