"""``flanforge plan --config FILE``: memory per rank for the configured setting and its alternatives
(``planning/memory_plan.py`` says what is counted and how)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from flanforge.errors import ConfigError
from flanforge.launcher.config import load_config
from flanforge.sizes import parse_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.micro_batch_size=8")
    parser.add_argument("--gpus-per-node", type=int, metavar="N", help="GPU ranks per node (default: launch.nproc_per_node)")
    parser.add_argument("--nodes", type=int, metavar="M", help="nodes (default: launch.nnodes)")
    parser.add_argument("--gpu-memory", metavar="SIZE", help="memory of one GPU, e.g. 80GiB (default: launch.gpu_memory)")
    parser.add_argument("--cpu-memory", metavar="SIZE", help="host memory of one node, e.g. 1TiB")
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        help="the ranks' device (default: launch.device; auto plans for GPUs)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (bytes throughout)")


def run(args: argparse.Namespace) -> int:
    from flanforge.launcher.planning.memory_plan import check_world
    from flanforge.launcher.planning.report import format_report, plan_report

    cfg = load_config(args.config, args.overrides)
    device = args.device or ("cpu" if cfg.launch.device == "cpu" else "cuda")
    if device == "cpu" and args.gpu_memory:
        raise ConfigError("--gpu-memory with CPU ranks: give the node's memory with --cpu-memory")
    gpu_memory = (args.gpu_memory or cfg.launch.gpu_memory) if device == "cuda" else None
    gpu_bytes = parse_bytes(gpu_memory, "--gpu-memory") if gpu_memory else None
    cpu_bytes = parse_bytes(args.cpu_memory, "--cpu-memory") if args.cpu_memory else None
    gpus, nodes = check_world(cfg, args.gpus_per_node, args.nodes)
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed logs to stdout on import: keep it for the report
        report = plan_report(cfg, gpus, nodes, gpu_bytes, cpu_bytes, device)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
