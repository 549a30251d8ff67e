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
import random
from dataclasses import dataclass
from typing import Any

from flanforge.launcher.config import Config, load_config
from flanforge.launcher.ranks.launch import ranks_per_node
from flanforge.mixtures.formats import FORMATS
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.registry import load_mixture
from flanforge.mixtures.sources.base import POLICIES
from flanforge.mixtures.sources.flan_collection import CollectionSource
from flanforge.mixtures.task import Task, TaskError


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


@dataclass
class Budget:
    steps: int
    examples_per_step: int

    @property
    def examples(self) -> int:
        return self.steps * self.examples_per_step


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config else None
    name = args.mixture or (cfg.mixture.name if cfg else None)
    if name is None:
        raise TaskError("name a mixture (or pass --config)")
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
    if steps < 1 or per_step < 1:
        raise TaskError("--steps and --examples-per-step must be at least 1")
    return Budget(steps, per_step)


def task_rows(mixture: Mixture, overrides: dict[str, float], budget: Budget | None) -> list[dict[str, Any]]:
    """One row per task: its sub-mixture, examples, templates, formats, cap, rate (and epochs for a budget)."""
    rates = mixture.rates(overrides)
    groups = mixture.group_of()
    caps: dict[str, int | None] = {}
    for _, member, rate in mixture.walk():
        if isinstance(member, Task):
            caps.setdefault(member.name, rate.cap)
    rows = []
    for task in mixture.tasks():
        examples = task.num_examples("train")
        row = {
            "name": task.name,
            "mixture": groups[task.name],
            "examples": examples,
            "templates": len(task.templates) + len(task.inverted_templates),
            "formats": list(task.formats),
            "rate": rates.get(task.name, 0.0),
            "cap": caps[task.name],
            "bad_records": task.bad_records,
        }
        if budget:
            row["epochs"] = budget.examples * row["rate"] / examples if examples else None
        rows.append(row)
    return rows


def collection_lacks(mixture: Mixture) -> list[str] | None:
    """What the mixture's Flan collection directories lack (None: it reads none)."""
    sources = [t.source for t in mixture.tasks() if isinstance(t.source, CollectionSource)]
    if not sources:
        return None
    collections = {id(s.collection): s.collection for s in sources}
    return [line for c in collections.values() for line in c.lacks()]


def table(mixture: Mixture, rows: list[dict[str, Any]], budget: Budget | None) -> str:
    """The rows grouped by sub-mixture, as aligned text."""
    total = sum(r["examples"] for r in rows)
    lines = [f"mixture '{mixture.name}': {len(rows)} tasks, {total:,} training examples"]
    if budget:
        lines.append(f"budget: {budget.steps:,} steps x {budget.examples_per_step:,} examples = {budget.examples:,} examples")
    bad = sum(r["bad_records"] for r in rows)
    if bad:
        lines.append(f"skipped bad records: {bad:,}")
    width = max(len(r["name"]) for r in rows)
    header = f"  {'task':<{width}}  {'examples':>9}  {'cap':>7}  {'rate':>8}  {'epochs':>7}  {'bad':>5}"
    for group in dict.fromkeys(r["mixture"] for r in rows):
        members = [r for r in rows if r["mixture"] == group]
        share = sum(r["rate"] for r in members)
        examples = sum(r["examples"] for r in members)
        lines += ["", f"{group}: {len(members)} tasks, {examples:,} examples, rate {share:.2%}", header]
        for r in members:
            cap = f"{r['cap']:,}" if r["cap"] is not None else "-"
            epochs = f"{r['epochs']:.3f}" if r.get("epochs") is not None else "-"
            lines.append(
                f"  {r['name']:<{width}}  {r['examples']:>9,}  {cap:>7}  {r['rate']:>8.4%}  {epochs:>7}  {r['bad_records']:>5}"
            )
    return "\n".join(lines)


def rendered(mixture: Mixture, overrides: dict[str, float], n: int, seed: int) -> list[dict[str, str]]:
    """``n`` examples per format, from tasks drawn by rate among those that have the format."""
    rng = random.Random(seed)
    rates = mixture.rates(overrides)
    tasks = [t for t in mixture.tasks() if rates.get(t.name, 0) > 0]
    out = []
    for fmt in FORMATS:
        able = [t for t in tasks if fmt in t.formats and t.num_examples("train")]
        for _ in range(n if able else 0):
            task = rng.choices(able, [rates[t.name] for t in able])[0]
            records = task.records("train")
            i = rng.randrange(len(records))
            ex = task.render(records[i], rng, i, format_name=fmt)
            out.append({"task": ex.task, "format": ex.format, "template_id": ex.template_id, "inputs": ex.inputs, "targets": ex.targets})
    return out
