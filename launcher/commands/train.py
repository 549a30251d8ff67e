"""``flanforge train``: load the config, then either train (inside a launched rank) or take the
run's lock, run the pre-flight checks and start the ranks.

Kept apart from ``training/loop.py`` (the rank's lifecycle) so that a mistake in the config is reported
before torch is imported: a typo costs a second, not a launch. The ranks DeepSpeed's launcher starts
run ``flanforge train`` again (``python -m flanforge.launcher.cli train ...``) and take the first branch.
"""

from __future__ import annotations

import argparse

from flanforge.arguments import writable_dir
from flanforge.launcher.training import runlock
from flanforge.launcher.config import Config, load_config
from flanforge.launcher.ranks.layout import in_launched_rank


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=50")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if in_launched_rank():
        from flanforge.launcher.evaluation.periodic import PeriodicEval
        from flanforge.launcher.training.loop import train_rank

        return train_rank(cfg, make_evaluation=PeriodicEval)
    # Fail in one line before any rank starts.
    from flanforge.launcher.evaluation.suites import check_metrics
    from flanforge.launcher.training.preflight import run_checks
    from flanforge.launcher.training.rundir import RunDir

    writable_dir(cfg.output_dir, "output_dir")
    run_dir = RunDir.of(cfg)
    if cfg.launch.node_rank == 0:  # one lock per run, held by the first node's launcher
        runlock.acquire(run_dir)
    check_metrics(run_checks(cfg, run_dir))  # the run's periodic evaluation scores its tasks
    from flanforge.launcher.ranks.launch import launch_ranks, ranks_per_node

    if not cfg.launch.ignore_memory_plan:
        from flanforge.launcher.planning.memory_plan import check_fits

        ranks = ranks_per_node(cfg)
        budget = memory_budget(cfg, ranks)
        if budget is not None:
            check_fits(cfg, ranks, *budget)  # a setting the memory plan says does not fit: refused here

    # The ranks know that this launcher holds the run's lock.
    return launch_ranks(cfg, args.config, args.overrides, extra_env={runlock.HELD_ENV: "1"})


def memory_budget(cfg: Config, ranks: int) -> tuple[str, int, str] | None:
    """What train's pre-flight checks the memory plan against: (the ranks' device, bytes a rank may use,
    where that figure comes from). ``launch.gpu_memory`` when set; else what this node has: its RAM (or
    its cgroup's limit) shared by its CPU ranks, or its smallest GPU (``nvidia-smi``). None when the
    GPUs' memory is unknown."""
    from flanforge.host_memory import node_memory
    from flanforge.launcher.ranks.devices import gpu_memory_of_node
    from flanforge.launcher.ranks.launch import device_kind_of
    from flanforge.sizes import format_bytes, parse_bytes

    if cfg.launch.gpu_memory is not None:
        return "cuda", parse_bytes(cfg.launch.gpu_memory, "launch.gpu_memory"), f"launch.gpu_memory={cfg.launch.gpu_memory}"
    if device_kind_of(cfg) == "cpu":
        total = node_memory()
        return "cpu", total // ranks, f"this node's {format_bytes(total)} of RAM for {ranks} CPU ranks"
    memory = gpu_memory_of_node()
    return None if memory is None else ("cuda", memory, f"this node's GPUs ({format_bytes(memory)}, nvidia-smi)")
