"""Rank layout from whichever launcher started this process.

Three launchers are understood, plus a plain single process:

- ``deepspeed`` (``deepspeed.launcher.launch``): RANK, WORLD_SIZE, LOCAL_RANK,
  LOCAL_SIZE, CROSS_RANK, CROSS_SIZE, MASTER_ADDR, MASTER_PORT.
- ``torchrun``: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
  MASTER_ADDR, MASTER_PORT (and TORCHELASTIC_RUN_ID).
- ``srun`` (one Slurm task per rank): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
  SLURM_NODEID, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE ("2(x3),1"), and the
  master is the first host of the step's (else the job's) node list.

Torch-style variables win over Slurm ones: ranks that ``deepspeed`` or ``torchrun``
started inside a Slurm job still carry the job's SLURM_* variables.

A Slurm task is a rank only inside a job step (``srun`` sets SLURM_STEP_ID; the batch
script itself has SLURM_PROCID=0 but no step id) and only when the step was not
started as a per-node launcher: ``slurm/train.sbatch`` runs one ``flanforge train``
per node with ``FLANFORGE_NODE_LAUNCHER=1``, and that process starts the ranks itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from flanforge.launcher.ranks.slurm_nodes import first_host, parse_tasks_per_node, slurm_job_port

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500
NODE_LAUNCHER_ENV = "FLANFORGE_NODE_LAUNCHER"
"""Set to 1 by slurm/train.sbatch on its one-task-per-node step: not a rank, a launcher."""


@dataclass(frozen=True)
class RankLayout:
    """Where this process sits in the job; ``launcher`` names who started it."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    master_addr: str
    master_port: int
    launcher: str
    """One of "deepspeed", "torchrun", "env" (RANK/WORLD_SIZE from elsewhere), "srun", "single"."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def in_launched_rank(env: Mapping[str, str] = os.environ) -> bool:
    """True when a launcher already made this process one rank of a job.

    ``flanforge train`` trains directly then; otherwise it starts the ``deepspeed``
    launcher itself.
    """
    if "RANK" in env or "LOCAL_RANK" in env:
        return True
    return _in_srun_rank(env)


def read_rank_layout(env: Mapping[str, str] = os.environ) -> RankLayout:
    """Read the rank layout from ``env``; raise ValueError naming the variables at fault."""
    if "RANK" in env or "LOCAL_RANK" in env:
        return _torch_layout(env)
    if _in_srun_rank(env):
        return _srun_layout(env)
    return RankLayout(
        rank=0,
        world_size=1,
        local_rank=0,
        local_world_size=1,
        node_rank=0,
        master_addr=env.get("MASTER_ADDR", DEFAULT_MASTER_ADDR),
        master_port=_int(env, "MASTER_PORT", DEFAULT_MASTER_PORT),
        launcher="single",
    )


def _in_srun_rank(env: Mapping[str, str]) -> bool:
    in_step = "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env)
    return in_step and env.get(NODE_LAUNCHER_ENV, "0") not in ("1", "true", "yes")


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValueError(f"{name} is not set")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def _torch_layout(env: Mapping[str, str]) -> RankLayout:
    if "LOCAL_SIZE" in env or "CROSS_RANK" in env:
        launcher = "deepspeed"
    elif "TORCHELASTIC_RUN_ID" in env:
        launcher = "torchrun"
    elif _in_srun_rank(env):
        launcher = "srun"  # an srun task after export_torch_env()
    elif "LOCAL_WORLD_SIZE" in env or "GROUP_RANK" in env:
        launcher = "torchrun"
    else:
        launcher = "env"
    missing = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if name not in env]
    if missing:
        present = ", ".join(f"{n}={env[n]}" for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if n in env)
        raise ValueError(f"incomplete {launcher} rank environment: {', '.join(missing)} not set ({present})")
    rank = _int(env, "RANK")
    world_size = _int(env, "WORLD_SIZE")
    local_rank = _int(env, "LOCAL_RANK")
    # Without a per-node size (a bare env:// launch) all ranks are taken to share a node.
    local_size_var = next((n for n in ("LOCAL_SIZE", "LOCAL_WORLD_SIZE") if n in env), "WORLD_SIZE")
    local_world_size = _int(env, local_size_var)
    if "CROSS_RANK" in env:
        node_rank, node_var = _int(env, "CROSS_RANK"), "CROSS_RANK"
    elif "GROUP_RANK" in env:
        node_rank, node_var = _int(env, "GROUP_RANK"), "GROUP_RANK"
    else:
        node_rank, node_var = rank // max(1, local_world_size), "RANK"
    _check(
        rank=(rank, "RANK"),
        world_size=(world_size, "WORLD_SIZE"),
        local_rank=(local_rank, "LOCAL_RANK"),
        local_world_size=(local_world_size, local_size_var),
        node_rank=(node_rank, node_var),
    )
    if "CROSS_SIZE" in env:
        nodes = _int(env, "CROSS_SIZE")
        if not 0 <= node_rank < nodes:
            raise ValueError(f"CROSS_RANK={node_rank} must be in [0, CROSS_SIZE={nodes})")
    return RankLayout(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        node_rank=node_rank,
        master_addr=env.get("MASTER_ADDR", DEFAULT_MASTER_ADDR),
        master_port=_port(env, "MASTER_PORT", DEFAULT_MASTER_PORT),
        launcher=launcher,
    )


def _srun_layout(env: Mapping[str, str]) -> RankLayout:
    # Step-level variables describe the srun that started us; job-level ones the
    # allocation (they differ when a step uses part of it).
    ntasks_var = next((n for n in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS") if n in env), None)
    if ntasks_var is None:
        raise ValueError("SLURM_PROCID is set but none of SLURM_STEP_NUM_TASKS, SLURM_NTASKS, SLURM_NPROCS is")
    rank = _int(env, "SLURM_PROCID")
    world_size = _int(env, ntasks_var)
    local_rank = _int(env, "SLURM_LOCALID", 0)
    node_rank = _int(env, "SLURM_NODEID", 0)
    if "SLURM_STEP_TASKS_PER_NODE" in env or "SLURM_TASKS_PER_NODE" in env:
        per_node_var = "SLURM_STEP_TASKS_PER_NODE" if "SLURM_STEP_TASKS_PER_NODE" in env else "SLURM_TASKS_PER_NODE"
        counts = parse_tasks_per_node(env[per_node_var])
        if not 0 <= node_rank < len(counts):
            raise ValueError(f"SLURM_NODEID={node_rank} but {per_node_var}={env[per_node_var]!r} lists {len(counts)} node(s)")
        local_world_size = counts[node_rank]
    elif "SLURM_NTASKS_PER_NODE" in env:
        per_node_var, local_world_size = "SLURM_NTASKS_PER_NODE", _int(env, "SLURM_NTASKS_PER_NODE")
    else:
        per_node_var, local_world_size = ntasks_var, world_size
    _check(
        rank=(rank, "SLURM_PROCID"),
        world_size=(world_size, ntasks_var),
        local_rank=(local_rank, "SLURM_LOCALID"),
        local_world_size=(local_world_size, per_node_var),
        node_rank=(node_rank, "SLURM_NODEID"),
    )
    if "MASTER_ADDR" in env:
        master_addr = env["MASTER_ADDR"]
    else:
        list_var = next((n for n in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST") if env.get(n)), None)
        master_addr = first_host(env[list_var]) if list_var else DEFAULT_MASTER_ADDR
    if "MASTER_PORT" in env:
        master_port = _port(env, "MASTER_PORT", DEFAULT_MASTER_PORT)
    elif env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"):
        job_var = "SLURM_JOB_ID" if env.get("SLURM_JOB_ID") else "SLURM_JOBID"
        master_port = slurm_job_port(_int(env, job_var))
    else:
        master_port = DEFAULT_MASTER_PORT
    return RankLayout(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port,
        launcher="srun",
    )


def _check(**fields: tuple[int, str]) -> None:
    """Consistency of one layout; each field carries the variable it was read from."""
    rank, rank_var = fields["rank"]
    world, world_var = fields["world_size"]
    local, local_var = fields["local_rank"]
    local_world, local_world_var = fields["local_world_size"]
    node, node_var = fields["node_rank"]
    if world < 1:
        raise ValueError(f"{world_var}={world} must be at least 1")
    if not 0 <= rank < world:
        raise ValueError(f"{rank_var}={rank} must be in [0, {world_var}={world})")
    if local_world < 1:
        raise ValueError(f"{local_world_var}={local_world} must be at least 1")
    if local_world > world:
        raise ValueError(f"{local_world_var}={local_world} exceeds {world_var}={world}")
    if not 0 <= local < local_world:
        raise ValueError(f"{local_var}={local} must be in [0, {local_world_var}={local_world})")
    if node < 0:
        raise ValueError(f"{node_var}={node} must be >= 0")


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    port = _int(env, name, default)
    if not 0 < port < 65536:
        raise ValueError(f"{name}={port} is not a TCP port (1-65535)")
    return port
