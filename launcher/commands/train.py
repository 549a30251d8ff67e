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
from flanforge.launcher.config import load_config
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

    if cfg.launch.gpu_memory is not None and not cfg.launch.ignore_memory_plan:
        from flanforge.launcher.planning.memory_plan import check_fits

        check_fits(cfg, ranks_per_node(cfg))  # a setting the memory plan says does not fit: refused here

    # The ranks know that this launcher holds the run's lock.
    return launch_ranks(cfg, args.config, args.overrides, extra_env={runlock.HELD_ENV: "1"})
