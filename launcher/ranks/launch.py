"""Start the ranks with DeepSpeed's own launcher (``deepspeed --num_gpus N ...``).

Each rank runs ``python -m flanforge.launcher.cli train`` (``flanforge train``) with the same config and
overrides. ``PYTHONSAFEPATH=1`` keeps the working directory off ``sys.path``
in the ranks, so a checkout's top-level ``kernels/`` folder is never mistaken
for the PyPI package of that name (transformers probes for it).

SIGUSR1 and SIGTERM sent to this process are passed to the ranks as SIGUSR1:
they finish the current step, write a checkpoint and exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psutil

from flanforge.errors import UserError
from flanforge.host_memory import malloc_tunables
from flanforge.sizes import parse_bytes
from flanforge.launcher.ranks import report
from flanforge.launcher.ranks.devices import DEVICE_ENV, device_kind, visible_cuda_count, visible_gpus
from flanforge.launcher.config import Config
from flanforge.launcher.ranks.process_group import free_port

RANK_MODULE = "flanforge.launcher.cli"
"""What each rank runs: the ``flanforge`` command itself (``python -m flanforge.launcher.cli train ...``)."""


def device_kind_of(cfg: Config, env: Mapping[str, str] = os.environ) -> str:
    """``cuda`` or ``cpu`` for the ranks this launcher starts (a job given GPUs that sees none: an error)."""
    return device_kind(cfg.launch.device, visible_cuda_count(), env)


def ranks_per_node(cfg: Config) -> int:
    if cfg.launch.nproc_per_node > 0:
        return cfg.launch.nproc_per_node
    return visible_cuda_count() if device_kind_of(cfg) == "cuda" else 2


def _devices_args(cfg: Config, env: Mapping[str, str]) -> list[str]:
    """``--num_gpus N``, or on GPUs named by ``CUDA_VISIBLE_DEVICES`` (the user's, or Slurm's), ``--include
    localhost:<the first N of them>``: DeepSpeed's runner would renumber the ranks' devices to 0..N-1
    otherwise, onto GPUs that may be another job's. Several nodes keep ``--num_gpus``."""
    n = ranks_per_node(cfg)
    ids = visible_gpus(env)
    if cfg.launch.nnodes == 1 and ids and device_kind_of(cfg, env) == "cuda":
        if n > len(ids):
            raise UserError(f"launch.nproc_per_node={n} but CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} names "
                            f"{len(ids)} GPUs: at most one rank per GPU")
        return ["--include", f"localhost:{','.join(ids[:n])}"]
    return ["--num_gpus", str(n)]


def master_port(cfg: Config) -> int:
    """``launch.master_port``, or a free port for 0; a configured port another process holds is a user error
    on the node that will listen on it (two runs on one machine would otherwise fail inside the ranks)."""
    if cfg.launch.master_port == 0:
        return free_port()
    if cfg.launch.node_rank == 0:
        try:
            free_port(port=cfg.launch.master_port)
        except OSError as exc:
            raise UserError(f"launch.master_port={cfg.launch.master_port} is in use on this host ({exc.strerror}; "
                            "another run?): choose another port, or launch.master_port=0 for a free one") from None
    return cfg.launch.master_port


def launcher_command(cfg: Config, config_path: str, overrides: list[str], workdir: str,
                     env: Mapping[str, str] = os.environ) -> list[str]:
    """DeepSpeed runner command line; files it needs (a hostfile) are written to ``workdir``."""
    cmd = [
        sys.executable, "-m", "deepspeed.launcher.runner",
        *_devices_args(cfg, env),
        "--master_addr", cfg.launch.master_addr,
        "--master_port", str(master_port(cfg)),
        "--no_local_rank",
    ]
    if cfg.launch.nnodes > 1:
        # One launcher per node (e.g. one per Slurm node), no ssh between nodes. The
        # runner wants a hostfile to count slots; the names are never contacted.
        cmd += ["--num_nodes", str(cfg.launch.nnodes), "--node_rank", str(cfg.launch.node_rank), "--no_ssh",
                "--hostfile", _placeholder_hostfile(workdir, cfg.launch.nnodes, ranks_per_node(cfg))]
    return cmd + ["--module", RANK_MODULE, "train", "--config", str(Path(config_path).resolve()), *overrides]


def _placeholder_hostfile(workdir: str, nnodes: int, slots: int) -> str:
    path = Path(workdir) / "hostfile"
    path.write_text("".join(f"node{i} slots={slots}\n" for i in range(nnodes)))
    return str(path)


def rank_env(cfg: Config, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ranks' environment: this one, the checkout off ``sys.path``, the device kind chosen here
    (:data:`~flanforge.launcher.ranks.devices.DEVICE_ENV`), threads pinned and glibc's mmap threshold as
    ``launch.mmap_threshold`` says on CPU, and ``extra`` (what the
    command tells its ranks, e.g. that it holds the run's lock)."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONSAFEPATH"] = "1"
    env[DEVICE_ENV] = device_kind_of(cfg)
    # DeepSpeed JIT-builds ops against this interpreter: one cache per environment,
    # or two venvs sharing ~/.cache would rebuild each other's ops on every start.
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
    if env[DEVICE_ENV] == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")
        if cfg.launch.mmap_threshold is not None:  # freed tensors' pages go back to the OS at once
            threshold = parse_bytes(cfg.launch.mmap_threshold, "launch.mmap_threshold")
            env["GLIBC_TUNABLES"] = malloc_tunables(threshold, env.get("GLIBC_TUNABLES", ""))
        env["OMP_NUM_THREADS"] = str(cfg.launch.threads_per_rank)
    return env


def _forward_to_ranks(proc: subprocess.Popen) -> None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if RANK_MODULE in " ".join(child.cmdline()):
                child.send_signal(signal.SIGUSR1)
        except psutil.Error:
            pass


def _ignore_usr1() -> None:
    # Under Slurm a signal reaches every process of the step: DeepSpeed's runner and
    # launch.py have no SIGUSR1 handler and would die; the ranks install their own.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def launch_ranks(cfg: Config, config_path: str, overrides: list[str], extra_env: dict[str, str] | None = None) -> int:
    """Run the ranks (with ``extra_env``, see :func:`rank_env`); a rank's error line is printed again last, and
    its exit status (2: user error) returned."""
    with tempfile.TemporaryDirectory(prefix="flanforge-launch-") as workdir:
        cmd = launcher_command(cfg, config_path, overrides, workdir)
        env = {**rank_env(cfg, extra_env), report.ERROR_DIR_ENV: workdir}
        proc = subprocess.Popen(cmd, env=env, preexec_fn=_ignore_usr1)
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, lambda _signum, _frame: _forward_to_ranks(proc))
        while True:
            try:
                status = proc.wait()
                break
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
        first = report.first_error(root=workdir)
        if first is None:
            return status
        print(first[1], file=sys.stderr, flush=True)
        return first[0]
