"""``flanforge inspect MIXTURE``: a mixture's sub-mixtures and tasks, their rates, and rendered examples.

MIXTURE is a registered name (``builtin``, ``demo``, ...) or a task/mixture
YAML file. The table shows, per sub-mixture and task, the training examples,
the cap, the effective sampling rate, and (given a step budget) how many
epochs of the task that budget draws. ``--render N`` prints N examples per
format; ``--json`` prints one JSON document instead of the table. For a
Flan collection (``flan2022 --data-dir DIR``) it also lists what the
directory lacks (``"lacks"``): FLAN 2022 variants with no records, and what
was not read.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flanforge.arguments import at_least
from flanforge.launcher.config import Config, load_config
from flanforge.launcher.ranks.launch import ranks_per_node
from flanforge.mixtures.inspection import Budget, collection_lacks, rendered, table, task_rows
from flanforge.mixtures.registry import check_data_dir, load_mixture
from flanforge.mixtures.sources.base import POLICIES
from flanforge.mixtures.task import TaskError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mixture", nargs="?", help="a registered mixture or a task/mixture YAML file (default: the config's)")
    parser.add_argument("--config", help="a run config: mixture, weights, bad-record policy and step budget come from it")
    parser.add_argument("--steps", type=int, help="optimizer steps of the budget (default: the config's train.max_steps)")
    parser.add_argument(
        "--examples-per-step",
        type=int,
        help="examples drawn per step (default from --config: packed rows per step, a lower bound on examples)",
    )
    parser.add_argument("--render", type=int, default=0, metavar="N", help="print N rendered examples per format")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendered examples")
    parser.add_argument("--on-bad-record", choices=POLICIES, help="override the bad-record policy")
    parser.add_argument("--data-dir", help="the Flan collection directory of `flan2022` (default: the config's mixture.data_dir)")
    parser.add_argument("--json", action="store_true", help='print {"tasks": [...]} as one JSON document')


def run(args: argparse.Namespace) -> int:
    at_least(args.steps, 1, "--steps")
    at_least(args.examples_per_step, 1, "--examples-per-step")
    at_least(args.render, 0, "--render")
    cfg = load_config(args.config) if args.config else None
    name = args.mixture or (cfg.mixture.name if cfg else None)
    if name is None:
        raise TaskError("name a mixture (or pass --config)")
    check_data_dir(name, args.data_dir)
    policy = args.on_bad_record or (cfg.mixture.on_bad_record if cfg else "error")
    mixture = load_mixture(name, policy, args.data_dir or (cfg.mixture.data_dir if cfg else None))
    overrides = dict(cfg.mixture.weights) if cfg else {}
    budget = _budget(args, cfg)
    rows = task_rows(mixture, overrides, budget)
    lacks = collection_lacks(mixture)
    if args.json:
        doc: dict[str, Any] = {"mixture": mixture.name, "tasks": rows}
        if lacks is not None:
            doc["lacks"] = lacks
        if budget:
            doc["budget"] = {"steps": budget.steps, "examples_per_step": budget.examples_per_step}
        if args.render:
            doc["rendered"] = rendered(mixture, overrides, args.render, args.seed)
        print(json.dumps(doc, indent=1))
        return 0
    print(table(mixture, rows, budget))
    if lacks:
        print("\nthe Flan collection directory lacks:\n" + "\n".join(f"  {line}" for line in lacks))
    if args.render:
        for ex in rendered(mixture, overrides, args.render, args.seed):
            print(f"\n=== {ex['format']} | {ex['task']} | template {ex['template_id']}\n{ex['inputs']}\n--- target\n{ex['targets']}")
    return 0


def _budget(args: argparse.Namespace, cfg: Config | None) -> Budget | None:
    steps = args.steps or (cfg.train.max_steps if cfg else None)
    per_step = args.examples_per_step
    if per_step is None and cfg is not None:
        per_step = cfg.train.micro_batch_size * cfg.train.grad_accum * ranks_per_node(cfg) * cfg.launch.nnodes
    if steps is None or per_step is None:
        return None
    return Budget(steps, per_step)
