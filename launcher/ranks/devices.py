"""Which device a rank computes on: chosen once, by one function, before its process group exists.

Every rank process (training, evaluation, the test probes and benchmark ranks) calls
:func:`bind_device` first: under NCCL a rank's first collective runs on the current CUDA
device, so two ranks of a node that have not chosen theirs would both use ``cuda:0``.

The choice (:func:`choose_device`) is the rank's local rank over the GPUs this process
sees: ``cuda:LOCAL_RANK`` when it sees all of the node's GPUs (``deepspeed``, ``torchrun``,
or ``srun`` without per-task binding), ``cuda:0`` when it sees exactly one (``srun
--gpus-per-task=1``, or a launcher that set ``CUDA_VISIBLE_DEVICES`` per rank). A rank that
sees fewer GPUs than its local rank needs is an error, as is a job that was given GPUs
(``CUDA_VISIBLE_DEVICES`` naming devices, Slurm's GPU variables, or ``launch.device=cuda``)
where torch sees none: never a silent CPU run.

``flanforge train`` decides for its ranks before starting them and tells them
(:data:`DEVICE_ENV`), because inside a rank started by DeepSpeed's launcher
``CUDA_VISIBLE_DEVICES`` is DeepSpeed's, set on CPU machines too.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from flanforge.errors import UserError
from flanforge.launcher.ranks.layout import RankLayout

DEVICE_ENV = "FLANFORGE_DEVICE"
"""``cuda`` or ``cpu``: the device kind the launcher chose for the ranks it started."""
SLURM_GPU_IDS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
"""Slurm's lists of the GPU ids a step or job holds."""
DEVICE_KINDS = ("auto", "cuda", "cpu")


def visible_gpus(env: Mapping[str, str]) -> list[str] | None:
    """The GPU ids ``CUDA_VISIBLE_DEVICES`` names: None when it is unset, [] when it hides every GPU."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    return [] if not ids or ids[0] in ("-1", "none", "NoDevFiles") else ids


def gpus_granted(env: Mapping[str, str]) -> str | None:
    """What in ``env`` says this job was given GPUs (for the error when torch sees none), or None."""
    if visible_gpus(env):
        return f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}"
    granted = [name for name in SLURM_GPU_IDS if env.get(name, "").strip()]
    if env.get("SLURM_GPUS_ON_NODE", "0").strip() not in ("", "0"):  # a count
        granted.append("SLURM_GPUS_ON_NODE")
    return f"{granted[0]}={env[granted[0]]}" if granted else None


def device_kind(requested: str, cuda_count: int, env: Mapping[str, str]) -> str:
    """``cuda`` or ``cpu`` for ``launch.device`` (``auto``: CUDA when torch sees a GPU). A job that asked
    for GPUs, or was given them, and sees none is a :class:`UserError`."""
    if requested not in DEVICE_KINDS:
        raise UserError(f"launch.device={requested!r}: choose one of {', '.join(DEVICE_KINDS)}")
    if requested == "cpu" or (requested == "auto" and env.get("DS_ACCELERATOR") == "cpu"):
        return "cpu"  # asked for: the config, or DeepSpeed's own accelerator override
    if cuda_count > 0:
        return "cuda"
    reason = "launch.device=cuda" if requested == "cuda" else gpus_granted(env)
    if reason is not None:
        raise UserError(f"this job asks for GPUs ({reason}) but torch sees none (torch {_torch_build()}); "
                        f"check the node's driver and the torch build, or set launch.device=cpu")
    return "cpu"


def choose_device(layout: RankLayout, kind: str, cuda_count: int) -> str:
    """``cpu``, or the ``cuda:i`` of this rank: its local rank over the GPUs it sees (one seen: that one)."""
    if kind == "cpu":
        return "cpu"
    if cuda_count == 1:
        return "cuda:0"
    if layout.local_rank >= cuda_count:
        raise UserError(f"rank {layout.rank} is local rank {layout.local_rank} of {layout.local_world_size} on its "
                        f"node but sees {cuda_count} GPUs: start at most one rank per GPU "
                        f"(launch.nproc_per_node, srun --gpus-per-task=1 or --ntasks-per-node)")
    return f"cuda:{layout.local_rank}"


def visible_cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def bind_device(layout: RankLayout, requested: str = "auto", env: Mapping[str, str] = os.environ):
    """This rank's ``torch.device``, made CUDA's current device (call it before any collective).
    ``requested`` is ``launch.device``; the launcher's decision (:data:`DEVICE_ENV`) wins."""
    import torch

    count = visible_cuda_count()
    kind = device_kind(env.get(DEVICE_ENV) or requested, count, env)
    device = torch.device(choose_device(layout, kind, count))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (and convolutions) may use TF32
        torch.backends.cudnn.allow_tf32 = True
    return device


def _torch_build() -> str:
    import torch

    return f"{torch.__version__}, CUDA {torch.version.cuda or 'none: a CPU build'}"


def gpu_memory_of_node(env: Mapping[str, str] = os.environ) -> int | None:
    """Bytes of the smallest GPU this job may use, as ``nvidia-smi`` reports them (no CUDA context is made
    in the launcher); None without ``nvidia-smi`` or a GPU it lists."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return smallest_visible_gpu(out.stdout, visible_gpus(env)) if out.returncode == 0 else None


def smallest_visible_gpu(listing: str, visible: list[str] | None) -> int | None:
    """Bytes of the smallest GPU of an ``nvidia-smi --query-gpu=index,uuid,memory.total`` listing (MiB, no
    header) among ``visible`` (:func:`visible_gpus`: indices or UUIDs; None: all); None when none is listed."""
    sizes = []
    for line in listing.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not parts[2].isdigit():
            continue
        index, uuid, mib = parts
        if visible is None or index in visible or uuid in visible:
            sizes.append(int(mib) * 2**20)
    return min(sizes) if sizes else None
