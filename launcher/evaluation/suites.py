"""Evaluation suites: tasks rendered into prompts, references and answer options.

The same task layer that renders training examples renders evaluation
prompts: a record of the requested split goes through :meth:`Task.render` with
a forced format (zero-shot, few-shot with exactly ``shots`` exemplars from the
``exemplars`` pool, or chain-of-thought) and an RNG seeded by task and record,
so a prompt never depends on how many ranks evaluate it. Only templates marked
as the original task are used (promptsource's ``original_task``; every
template of a task that does not come from promptsource).

=====================  ==========================================================
suite                  tasks
=====================  ==========================================================
a mixture name         every task of a registered mixture (``demo``,
                       ``builtin_heldout``, ``builtin_arithmetic``, ...), clustered by
                       top-level sub-mixture (a flat mixture by task family)
``builtin_heldin``     a fixed sample of :data:`HELDIN_PER_CLUSTER` tasks from each
                       cluster of ``builtin`` (held-in: their training splits train)
a YAML path            the task or mixture the file defines (its tasks' ``metric``)
``bbh:DIR``            BIG-Bench Hard, 3-shot, answer only (``benchmarks.py``)
``bbh_cot:DIR``        BIG-Bench Hard, 3-shot chain of thought
``gsm8k:DIR``          GSM8K's test split, chain of thought, final answer after ``####``
``mmlu:DIR``           MMLU (original layout), ``shots``-shot (default 5), per subject and category (``mmlu.py``)
``mmlu_cot:DIR``       MMLU, chain of thought with Flan's exemplars (``--cot-prompts``), exact match
``flan2022_heldout``   MMLU, BBH and GSM8K as Flan 2022 reports them (``heldout.py``, built by ``run.py``)
=====================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Callable

from flanforge.errors import did_you_mean
from flanforge.launcher.evaluation import benchmarks, metrics
from flanforge.launcher.evaluation.tasks import EvalExample, EvalTask, Suite
from flanforge.mixtures.formats import COT_ANSWER, FORMAT_KINDS
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.task import Task, TaskError

KINDS = tuple(k for k in FORMAT_KINDS if k != "inverted")  # an inverted example has no answer to score
"""Format kinds ``--formats`` takes; each picks, per task, the format of that kind the task has."""
DEFAULT_SHOTS = 3
"""Exemplars of a few-shot format when ``--shots`` is not given."""
HELDIN_PER_CLUSTER = 3


def suite_names() -> list[str]:
    from flanforge.mixtures.registry import mixture_names

    return sorted({"builtin_heldin", *benchmarks.SUITES, *mixture_names()})


def check_suite_spec(spec: str) -> None:
    """``spec`` names a suite (see the module doc) whose directory or file exists; nothing is read."""
    from flanforge.mixtures.sources import task_yaml

    name, _, path = spec.partition(":")
    if name in benchmarks.SUITES:
        if not path:
            raise TaskError(f"suite '{name}' reads its data from a directory: --suites {name}:/path/to/{name.split('_')[0]}")
        if not Path(path).exists():
            raise TaskError(f"suite '{spec}': {path} does not exist")
    elif task_yaml.is_yaml_path(spec):
        if not Path(spec).is_file():
            raise TaskError(f"suite '{spec}': no such file")
    elif name not in suite_names():
        raise TaskError(f"unknown suite '{spec}'{did_you_mean(name, suite_names(), n=3, cutoff=0.4)}")


def build_suite(spec: str, *, split: str | None = None, kind: str = "zero_shot", shots: int | None = None,
                max_examples: int | None = None, count_tokens: Callable[[str], int] | None = None,
                encoding: str | None = None, on_bad_record: str = "error", cot_prompts: str | None = None) -> Suite:
    """The suite ``spec`` names (see the module doc), its tasks rendered in format ``kind``, from ``split``
    (None: the suite's own default, ``validation`` for tasks); ``encoding``: of a benchmark directory's files
    (a task YAML declares its own); ``on_bad_record``: the policy of sources that set none (``skip``: bad
    records are skipped and counted per task); ``cot_prompts``: ``mmlu_cot``'s exemplars."""
    from flanforge.mixtures.registry import get_mixture, load_mixture
    from flanforge.mixtures.sources import task_yaml

    if kind not in KINDS:
        hint = did_you_mean(kind, KINDS, n=3, cutoff=0.4)
        raise TaskError(f"unknown format kind '{kind}' (kinds: {', '.join(KINDS)}){hint}")
    check_suite_spec(spec)
    name, _, path = spec.partition(":")
    if name in benchmarks.SUITES:
        return benchmarks.build(name, path, split=split, shots=shots, max_examples=max_examples,
                                count_tokens=count_tokens, encoding=encoding, policy=on_bad_record,
                                cot_prompts=cot_prompts)
    split = split or "validation"
    if name == "builtin_heldin":
        pairs = [(t, sub.name) for sub in _sub_mixtures(get_mixture("builtin")) for t in _sample(sub)]
    elif task_yaml.is_yaml_path(spec):
        mixture = load_mixture(spec, on_bad_record)
        name, pairs = mixture.name, _clustered(mixture)
    else:
        pairs = _clustered(load_mixture(name, on_bad_record))
    suite = Suite(name, [])
    for task, cluster in pairs:
        fmt = pick_format(task, kind, shots)
        if fmt is None:
            suite.skipped[task.name] = f"no {kind} format among {list(task.formats)}"
            continue
        if getattr(task.source, "policy", "error") == "skip" and not task.records(split):  # its source's policy
            suite.skipped[task.name] = f"no usable '{split}' record ({task.bad_records} bad records skipped)"
            continue
        examples, longest = render_examples(task, split, fmt, shots, max_examples, count_tokens)
        suite.tasks.append(EvalTask(task.name, cluster, task.metric, fmt, examples,
                                    max_new_tokens=int(1.25 * longest) + 8,
                                    answer_pattern=COT_ANSWER if fmt.endswith("_cot") else None,
                                    bad_records=task.bad_records))
    if not suite.tasks:  # its means would be NaN
        why = "; ".join(f"{t}: {w}" for t, w in list(suite.skipped.items())[:3])
        raise TaskError(f"suite '{name}': no task to score ({len(suite.skipped)} skipped: {why})")
    return suite


def _sub_mixtures(mixture: Mixture) -> list[Mixture]:
    return [m for m, _ in mixture.members if isinstance(m, Mixture)]


def _sample(mixture: Mixture) -> list[Task]:
    tasks = sorted(mixture.tasks(), key=lambda t: t.name)
    return random.Random(f"heldin/{mixture.name}").sample(tasks, min(HELDIN_PER_CLUSTER, len(tasks)))


def _clustered(mixture: Mixture) -> list[tuple[Task, str]]:
    """Every task with its cluster: the top-level sub-mixture, or (flat mixtures) the task's family."""
    groups = mixture.group_of()
    return [(t, groups[t.name] if groups[t.name] != mixture.name else (t.family or mixture.name)) for t in mixture.tasks()]


def pick_format(task: Task, kind: str, shots: int | None) -> str | None:
    """The task's format for ``kind``: with options when the task is scored by rank classification."""
    if task.format_field is not None:  # records come rendered in their own formats
        return task.formats[0]
    prefix = "fs" if kind == "few_shot" or (kind == "cot" and shots) else "zs"
    if kind == "cot":
        candidates = [f"{prefix}_cot"]
    elif metrics.get(task.metric, where(task)).needs_options:
        candidates = [f"{prefix}_opt", f"{prefix}_noopt"]
    else:
        candidates = [f"{prefix}_noopt", f"{prefix}_opt"]
    return next((f for f in candidates if f in task.formats), None)


def eval_view(task: Task) -> Task:
    """The task with only the templates evaluation may use (promptsource: the original-task ones)."""
    keep = tuple(t for t in task.templates if t.original_task)
    if not keep:
        raise TaskError(f"task '{task.name}': no template is marked as the original task "
                        f"(promptsource metadata.original_task), so it cannot be evaluated")
    return task if len(keep) == len(task.templates) else dataclasses.replace(task, templates=keep)


def render_examples(task: Task, split: str, fmt: str, shots: int | None, max_examples: int | None,
                    count_tokens: Callable[[str], int] | None = None) -> tuple[list[EvalExample], int]:
    """The first ``max_examples`` records of ``split`` rendered in ``fmt``, each from its own seeded RNG,
    and the token length of the longest rendered target (rationale included): the generation budget."""
    view = eval_view(task)
    records = task.records(split)
    n = len(records) if max_examples is None else min(max_examples, len(records))
    if n == 0:
        raise TaskError(f"task '{task.name}': its '{split}' split is empty")
    k = (shots or DEFAULT_SHOTS) if fmt.startswith("fs") else None
    pool = len(task.records("exemplars")) if k else 0
    if k and k > pool:
        raise TaskError(f"{where(task)}: --shots {k}{'' if shots else ' (the default)'} but its exemplars split "
                        f"has {pool} records (at most --shots {pool})")
    out, longest = [], 0
    count = count_tokens or (lambda text: 2 * len(text.split()))
    for i in range(n):
        ex = view.render(records[i], random.Random(f"eval/{task.name}/{split}/{i}"), i, format_name=fmt,
                         count_tokens=count_tokens, shots=k)
        options, correct = (), ()
        if metrics.get(task.metric, where(task)).needs_options:
            options = ex.options
            if not options:
                raise TaskError(f"task '{task.name}': rank classification (metric: {task.metric}) needs answer "
                                f"options (options_field or promptsource answer_choices)")
            correct = tuple(j for j, o in enumerate(options) if o.strip() == ex.answer.strip())
            if not correct:
                raise TaskError(f"task '{task.name}', {split} record {i}: the answer {ex.answer!r} "
                                f"is none of its options {list(options)}")
        out.append(EvalExample(ex.inputs, (ex.answer,), tuple(options), correct))
        longest = max(longest, count(ex.targets))
    return out, longest


def validation_pairs(mixture: Mixture, per_task: int, count_tokens: Callable[[str], int] | None = None
                     ) -> dict[str, list[tuple[str, str]]]:
    """Sub-mixture -> ``(inputs, targets)`` of each task's first ``per_task`` validation records, rendered
    as training renders them (a format and template drawn per record, here from a seeded RNG)."""
    groups = mixture.group_of()
    out: dict[str, list[tuple[str, str]]] = {}
    for task in mixture.tasks():
        records = task.records("validation")
        for i in range(min(per_task, len(records))):
            ex = task.render(records[i], random.Random(f"val/{task.name}/{i}"), i, count_tokens=count_tokens)
            out.setdefault(groups[task.name], []).append((ex.inputs, ex.targets))
    return out


def check_metrics(mixture: Mixture) -> None:
    """Every task of ``mixture`` names a registered metric (a :class:`TaskError` names the task and the closest)."""
    for task in mixture.tasks():
        metrics.get(task.metric, where(task))


def where(task: Task) -> str:
    """How a message names ``task``: its file (when it has one) and its name."""
    return f"{task.origin + ': ' if task.origin else ''}task '{task.name}'"
