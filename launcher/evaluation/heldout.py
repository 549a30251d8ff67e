"""``flan2022_heldout``: the Flan 2022 held-out set as one suite, and its one table.

Its components are suites of their own, each read from its benchmark's data directory
(``--data mmlu=DIR bbh=DIR gsm8k=DIR``, or the run's ``eval.data``) in the setting the Flan
papers report (Chung et al. 2022):

    component   data    setting
    mmlu        mmlu    5-shot, answer only (rank classification over A-D, question-weighted)
    mmlu_cot    mmlu    chain of thought with Flan's exemplars (only with ``--cot-prompts FILE``)
    bbh         bbh     3-shot, answer only (mean over its 27 tasks)
    bbh_cot     bbh     3-shot chain of thought
    gsm8k       gsm8k   3-shot chain of thought

The table holds each component's headline number (its suite's mean of its tasks' metric:
accuracy for MMLU, exact match elsewhere) and their mean, over the components that ran. A
component without its data (or ``mmlu_cot`` without exemplars) is listed as not run, with why:
never a zero. TyDiQA and MGSM, also in Flan's held-out table, are not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from flanforge.constants import HELDOUT_DATA
from flanforge.errors import UserError, did_you_mean

if TYPE_CHECKING:  # the evaluator imports torch; flanforge eval checks its arguments before that
    from flanforge.launcher.evaluation.evaluator import SuiteResult

NAME = "flan2022_heldout"
COMPONENTS = {"mmlu": "mmlu", "mmlu_cot": "mmlu", "bbh": "bbh", "bbh_cot": "bbh", "gsm8k": "gsm8k"}
"""Component (a suite read from a directory) -> the benchmark whose data it reads, in the table's order."""


@dataclass
class Plan:
    """What the suite runs: its components as suite specs (``name:DIR``), and those not run with why."""

    specs: list[str]
    not_run: dict[str, str]


def parse_data(items: Sequence[str]) -> dict[str, str]:
    """``--data KEY=DIR ...`` as ``{benchmark: DIR}``; a malformed item, an unknown benchmark (the valid
    ones named) or one given twice is a one-line error."""
    data: dict[str, str] = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not path:
            raise UserError(f"--data {item}: expected BENCHMARK=DIR (benchmarks: {', '.join(HELDOUT_DATA)})")
        if key not in HELDOUT_DATA:
            raise UserError(f"--data {item}: unknown benchmark '{key}' (benchmarks: {', '.join(HELDOUT_DATA)})"
                            f"{did_you_mean(key, HELDOUT_DATA)}")
        if key in data:
            raise UserError(f"--data gives '{key}' twice: {data[key]} and {path}")
        data[key] = path
    return data


def check_readers(suites: Sequence[str], *, data: bool, cot_prompts: bool) -> None:
    """``--data`` and ``--cot-prompts`` given on the command line are read by a suite of ``suites``: an
    option nothing reads is a one-line error, not silently ignored."""
    names = {s.partition(":")[0] for s in suites}
    if data and NAME not in names:
        raise UserError(f"--data is read by the {NAME} suite only, and --suites does not name it")
    if cot_prompts and not names & {NAME, "mmlu_cot"}:
        raise UserError(f"--cot-prompts is read by the mmlu_cot and {NAME} suites only, and --suites names neither")


def plan(data: dict[str, str], cot_prompts: str | None) -> Plan:
    """The components ``data`` (benchmark -> directory) and ``cot_prompts`` allow; a directory that does not
    exist is an error (a component left out is one whose benchmark has no entry)."""
    specs, not_run = [], {}
    for component, key in COMPONENTS.items():
        if key not in data:
            not_run[component] = f"no {key} data (--data {key}=DIR, or eval.data.{key})"
        elif component == "mmlu_cot" and cot_prompts is None:
            not_run[component] = "no chain-of-thought exemplars (--cot-prompts FILE)"
        elif not Path(data[key]).is_dir():
            raise UserError(f"{NAME}: the {key} data directory {data[key]} does not exist")
        else:
            specs.append(f"{component}:{data[key]}")
    return Plan(specs, not_run)


def table(results: Sequence[SuiteResult], plan: Plan) -> dict[str, Any]:
    """results.json's entry: each component's metric and value, their mean (None when none ran), and
    the components not run with why."""
    by_name = {r.suite.name: r for r in results}
    components = {}
    for component in COMPONENTS:
        if component in by_name:
            metric = by_name[component].suite.tasks[0].metric
            components[component] = {"metric": metric, "value": by_name[component].mean()[metric]}
    values = [c["value"] for c in components.values()]
    return {"components": components, "mean": sum(values) / len(values) if values else None,
            "not_run": dict(plan.not_run)}
