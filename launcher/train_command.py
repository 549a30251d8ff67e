"""``flanforge train``: load the config, then either train (inside a launched rank) or take the
run's lock, run the pre-flight checks and start the ranks.

Kept apart from ``train.py`` (the rank's lifecycle) so that a mistake in the config is reported
before torch is imported: a typo costs a second, not a launch.
"""

from __future__ import annotations

import argparse

from flanforge.launcher import runlock
from flanforge.launcher.config import load_config
from flanforge.launcher.dist import in_launched_rank


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=50")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if in_launched_rank():
        from flanforge.launcher.train import train_rank

        return train_rank(cfg)
    # Fail in one line before any rank starts.
    from flanforge.launcher.preflight import run_checks

    if cfg.launch.node_rank == 0:  # one lock per run, held by the first node's launcher
        runlock.acquire(cfg.output_dir)
    run_checks(cfg)
    from flanforge.launcher.launch import launch_ranks

    return launch_ranks(cfg, args.config, args.overrides)
