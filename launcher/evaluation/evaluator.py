"""Run evaluation suites through a model, data-parallel, and score them.

Work is cut into batches that do not depend on the number of ranks: each
task's examples (with all their options, for rank classification) are sorted
(by prompt tokens for rank classification, so that prompts sharing a
beginning share a batch; by length for generation) and chunked into
``batch_size``-sized batches, and rank ``r`` runs batches ``r, r + W, r + 2W, ...``. Every batch is
therefore computed exactly as a one-rank run computes it, and the raw outputs
gathered on rank 0 (``all_gather_object``) are identical to a one-rank run's;
scoring happens after the gather. Nothing here touches an RNG.

With ``lockstep`` (a ZeRO-3 engine, whose every forward gathers each layer's
weights from all ranks) the batches are shared out task by task, and a rank
left without a batch of a task repeats one and discards it: every rank then
makes the same model calls of the same kind at the same time (generation
with ``synced_gpus``, see ``Scorer``). The batches, and so the results, stay
those of a one-rank run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from flanforge.launcher.evaluation.tasks import EvalTask, Suite
from flanforge.launcher.evaluation import metrics
from flanforge.launcher.evaluation.metrics import Generation
from flanforge.launcher.evaluation.scoring import Scorer, with_eos
from flanforge.mixtures.formats import extract_answer
from flanforge.model.tokenizer import Tokenizer

T = TypeVar("T")


@dataclass
class TaskResult:
    """One task's scores: per-metric means, 95% intervals, and one record per example."""

    task: EvalTask
    metrics: dict[str, float]
    ci95: dict[str, list[float]]
    predictions: list[dict[str, Any]]
    invalid: int = 0
    """Empty or unparsable generations (scored wrong, kept in ``n``)."""
    truncated: int = 0
    """Prompts cut from the left to fit the model's length."""


@dataclass
class SuiteResult:
    suite: Suite
    tasks: list[TaskResult] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        """Mean over tasks of each metric: unweighted (as FLAN averages over tasks), or in a weighted suite
        weighted by the tasks' examples (MMLU's mean over all questions)."""
        return mean_over(self.tasks, self.suite.weighted)

    def cluster_means(self) -> dict[str, dict[str, float]]:
        """cluster -> metric -> its tasks' mean, weighted as :meth:`mean` weights."""
        clusters: dict[str, list[TaskResult]] = {}
        for result in self.tasks:
            clusters.setdefault(result.task.cluster, []).append(result)
        return {c: mean_over(results, self.suite.weighted) for c, results in sorted(clusters.items())}


def mean_over(results: Sequence[TaskResult], weighted: bool) -> dict[str, float]:
    """metric -> the mean of the tasks' values, each weighted by its examples when ``weighted``."""
    sums: dict[str, list[float]] = {}
    for result in results:
        weight = len(result.task.examples) if weighted else 1
        for metric, value in result.metrics.items():
            acc = sums.setdefault(metric, [0.0, 0])
            acc[0], acc[1] = acc[0] + weight * value, acc[1] + weight
    return {m: total / weight for m, (total, weight) in sums.items()}


def shared_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many first tokens all ``sequences`` have in common (those of the lexicographically first and last)."""
    if not sequences:
        return 0
    first, last = min(sequences), max(sequences)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return n


@dataclass
class _Unit:
    """One batch of work: which suite/task, and the example (and option) indices in it."""

    suite: int
    task: int
    examples: list[int]


class Evaluator:
    """Scores suites with ``scorer``; ``gather(obj) -> list`` collects one object from every rank."""

    def __init__(self, scorer: Scorer, tokenizer: Tokenizer, *, batch_size: int = 16, rank: int = 0,
                 world_size: int = 1, gather: Callable[[Any], list[Any]] | None = None, max_length: int | None = None,
                 lockstep: bool = False):
        self.scorer, self.tokenizer, self.batch_size = scorer, tokenizer, batch_size
        self.rank, self.world_size, self.lockstep = rank, world_size, lockstep
        self.gather = gather or (lambda obj: [obj])
        self.max_length = max_length
        self._shared: dict[tuple[int, int], int] = {}
        """(suite, task) -> how many first prompt tokens all its examples share (set by :meth:`run`)."""

    def run(self, suites: Sequence[Suite]) -> list[SuiteResult] | None:
        """Results on rank 0 (None elsewhere). Collective: every rank calls it with the same suites."""
        prompts = [[self._prompt_ids(t) for t in s.tasks] for s in suites]
        self._shared = {(si, ti): shared_length([ids for ids, _ in task_prompts])
                        for si, suite_prompts in enumerate(prompts) for ti, task_prompts in enumerate(suite_prompts)}
        units = self._units(suites, prompts)
        if self.lockstep:  # each task's batches shared out on their own: all ranks run the same task at once
            mine = [m for _, group in itertools.groupby(units, key=lambda u: (u.suite, u.task))
                    for m in self._share(list(group))]
        else:
            mine = self._share(units)
        outputs: dict[tuple[int, int, int], Any] = {}
        for unit, keep in mine:
            computed = self._compute(suites[unit.suite].tasks[unit.task], prompts[unit.suite][unit.task], unit)
            if keep:
                outputs.update(computed)
        gathered = self.gather(outputs)
        if self.rank != 0:
            return None
        merged = {k: v for part in gathered for k, v in part.items()}
        return [SuiteResult(s, [self._score(si, ti, t, merged, prompts[si][ti]) for ti, t in enumerate(s.tasks)])
                for si, s in enumerate(suites)]

    def losses(self, groups: dict[str, list[tuple[str, str]]]) -> dict[str, float] | None:
        """Per-token loss of each group's targets (EOS included) given their inputs, as training
        computes it, and ``all`` over every group; on rank 0 (None elsewhere). Collective."""
        items = [(g, x, y) for g, pairs in sorted(groups.items()) for x, y in pairs]
        batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        partial: dict[str, list[float]] = {}
        for batch, keep in self._share(batches):
            inputs = self.tokenizer.encode_batch([x for _, x, _ in batch])
            targets = with_eos(self.tokenizer.encode_batch, [y for _, _, y in batch], self.scorer.eos_id)
            if self.max_length is not None:  # cut inputs from the left, as training's packer does
                inputs = [x[max(0, len(x) + len(y) - self.max_length):] or x[-1:] for x, y in zip(inputs, targets)]
            lls = self.scorer.loglikelihoods([(x, [y]) for x, y in zip(inputs, targets)])
            if not keep:
                continue
            for (group, _, _), ll, y in zip(batch, lls, targets):
                total = partial.setdefault(group, [0.0, 0])
                total[0] -= ll[0]
                total[1] += len(y)
        gathered = self.gather(partial)
        if self.rank != 0:
            return None
        sums: dict[str, list[float]] = {}
        for part in gathered:
            for group, (nll, tokens) in part.items():
                for key in (group, "all"):
                    acc = sums.setdefault(key, [0.0, 0])
                    acc[0], acc[1] = acc[0] + nll, acc[1] + tokens
        return {k: nll / tokens for k, (nll, tokens) in sums.items()}

    # ------------------------------------------------------------------ batching

    def _share(self, work: list[T]) -> list[tuple[T, bool]]:
        """This rank's items of ``work`` (every W-th), each with whether to keep its output; under
        ``lockstep`` padded with repeats of the first item (not kept) to as many as any rank gets."""
        mine = [(w, True) for w in work[self.rank::self.world_size]]
        if self.lockstep and work:
            mine += [(work[0], False)] * (-(-len(work) // self.world_size) - len(mine))
        return mine

    def _prompt_ids(self, task: EvalTask) -> list[tuple[list[int], bool]]:
        """Token ids of each prompt (rank classification: of the convention's context), cut from the left
        to leave room for the answer; (ids, truncated)."""
        context = self.scorer.convention.context if metrics.get(task.metric).needs_options else (lambda p: p)
        ids = self.tokenizer.encode_batch([context(e.prompt) for e in task.examples])
        if self.max_length is None:
            return [(i, False) for i in ids]
        longest_option = max((len(o) for e in task.examples for o in self.tokenizer.encode_batch(list(e.options))),
                             default=0)
        room = self.max_length - max(task.max_new_tokens, longest_option + 1)
        return [(i[-room:], True) if len(i) > room else (i, False) for i in ids]

    def _units(self, suites: Sequence[Suite], prompts) -> list[_Unit]:
        units = []
        for si, suite in enumerate(suites):
            for ti, task in enumerate(suite.tasks):
                ids = prompts[si][ti]
                # Rank classification: prompts in token order, so that a batch's share their beginnings
                # (launcher/evaluation/prefix_trie.py feeds those once); generation: by length, for less padding.
                # Stable sorts: the same batches on every rank.
                options = metrics.get(task.metric).needs_options
                key = (lambda e: ids[e][0]) if options else (lambda e: -len(ids[e][0]))
                order = sorted(range(len(task.examples)), key=key)
                units += [_Unit(si, ti, order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size)]
        return units

    def _compute(self, task: EvalTask, prompts, unit: _Unit) -> dict[tuple[int, int, int], Any]:
        """Raw outputs of one batch: per example, its options' log-likelihoods or its generated text."""
        keys = [(unit.suite, unit.task, e) for e in unit.examples]
        if metrics.get(task.metric).needs_options:
            convention, scorer = self.scorer.convention, self.scorer
            requests = [(prompts[e][0], convention.continuations(self.tokenizer.encode_batch, task.examples[e].prompt,
                                                                 task.examples[e].options, scorer.arch, scorer.eos_id))
                        for e in unit.examples]
            return dict(zip(keys, self.scorer.loglikelihoods(requests, shared=self._shared[unit.suite, unit.task])))
        rows = self.scorer.generate([prompts[e][0] for e in unit.examples], task.max_new_tokens,
                                    task.stops, self.tokenizer.decode)
        return {key: self.tokenizer.decode(row) for key, row in zip(keys, rows)}

    # ------------------------------------------------------------------ scoring

    def _score(self, si: int, ti: int, task: EvalTask, outputs, prompts) -> TaskResult:
        metric = metrics.get(task.metric)
        scores, records, invalid = [], [], 0
        for e, ex in enumerate(task.examples):
            record: dict[str, Any] = {"task": task.name, "index": e, "prompt": ex.prompt, "references": list(ex.references)}
            output = outputs[(si, ti, e)]
            if metric.needs_options:
                best = max(range(len(output)), key=output.__getitem__)  # the first of equal ones
                record.update(options=list(ex.options), loglikelihoods=output, prediction=ex.options[best])
            else:
                text = self._cut(output, task.stops)
                output = Generation(text, extract_answer(text, task.answer_pattern))
                invalid += output.answer is None
                record.update(generation=text, prediction=output.answer, invalid=output.answer is None)
            record["scores"] = metric.score(ex, output)
            scores.append(record["scores"])
            records.append(record)
        means, ci = metric.aggregate(scores)
        return TaskResult(task, means, ci, records, invalid=invalid, truncated=sum(t for _, t in prompts))

    @staticmethod
    def _cut(text: str, stops: Sequence[str]) -> str:
        for stop in stops:
            text = text.split(stop, 1)[0]
        return text.strip()
