"""What a mixture holds and what a step budget draws from it: one row per task (examples, cap, rate,
epochs), the table ``flanforge inspect`` prints, rendered examples per format, and what a Flan
collection directory lacks."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from flanforge.mixtures.formats import FORMATS
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.sources.flan_collection import CollectionSource
from flanforge.mixtures.task import Task


@dataclass
class Budget:
    steps: int
    examples_per_step: int

    @property
    def examples(self) -> int:
        return self.steps * self.examples_per_step


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
