"""What a metric is: how one example is scored, and how a task's scores aggregate (mean, 95% bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from flanforge.errors import TaskError, did_you_mean

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
_REGISTRY: dict[str, Metric] = {}


@dataclass(frozen=True)
class Generation:
    """What a generative task's example produced: the generated text (cut at the stops), and the answer
    it states (the text itself, or after a chain of thought's answer phrase; None when it states none)."""

    text: str
    answer: str | None


class Metric:
    """One registered metric. Subclasses set the class attributes and implement one of the ``score_*``."""

    name: str
    """What a task's ``metric`` names."""
    reports: tuple[str, ...]
    """The numbers each example gets and each task reports (the first is the headline)."""
    needs_options: bool = False
    """Rank classification: scored on the log-likelihood of each answer option, else on a generation."""
    higher_is_better: bool = True

    def score(self, example, output) -> dict[str, float]:
        """The reported numbers of one example (``example``: an ``EvalExample``); ``output`` is its options'
        log-likelihoods when :attr:`needs_options`, else a :class:`Generation` (an invalid one scores 0)."""
        if self.needs_options:
            return self.score_options(output, example.options, example.correct)
        if output.answer is None:
            return dict.fromkeys(self.reports, 0.0)
        return self.score_generation(output, example.references)

    def score_options(self, loglikelihoods: Sequence[float], options: Sequence[str],
                      correct: Sequence[int]) -> dict[str, float]:
        raise NotImplementedError(f"metric '{self.name}' scores generations")

    def score_generation(self, generation: Generation, references: Sequence[str]) -> dict[str, float]:
        raise NotImplementedError(f"metric '{self.name}' scores answer options")

    def aggregate(self, scores: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Per reported number, the mean over a task's examples and its 95% bootstrap interval."""
        return summarize(scores, self.reports)


def register(metric: Metric) -> Metric:
    """Make ``metric`` what a task's ``metric: <name>`` scores with; a name is registered once."""
    if metric.name in _REGISTRY:
        raise ValueError(f"metric '{metric.name}' is already registered")
    taken = {r for m in _REGISTRY.values() for r in m.reports} & set(metric.reports)
    if taken:
        raise ValueError(f"metric '{metric.name}': {sorted(taken)} already reported by another metric")
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    del _REGISTRY[name]


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str, where: str = "") -> Metric:
    """The metric ``name``; a :class:`TaskError` naming ``where`` (e.g. "file: task 'x'") and the closest name."""
    if name not in _REGISTRY:
        hint = did_you_mean(name, list(_REGISTRY), n=2, cutoff=0.3)
        raise TaskError(f"{where + ': ' if where else ''}unknown metric '{name}' (metrics: {', '.join(_REGISTRY)}){hint}")
    return _REGISTRY[name]


def higher_is_better(reported: str) -> bool:
    """Whether a larger value of the reported number ``reported`` is better (True for a name no metric reports)."""
    return next((m.higher_is_better for m in _REGISTRY.values() if reported in m.reports), True)


def reported_names() -> tuple[str, ...]:
    """Every number some registered metric reports."""
    return tuple(r for m in _REGISTRY.values() for r in m.reports)


def summarize(scores: Sequence[dict[str, float]], metrics: Sequence[str]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Mean of each metric over examples, and its 95% bootstrap interval (seeded: reproducible; one
    resampling shared by the metrics). No scores is a ValueError, never a NaN (an :class:`EvalTask` has examples)."""
    means, intervals = {}, {}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(scores)
    if not n:
        raise ValueError("no scores to summarize")
    picks = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    for metric in metrics:
        values = np.asarray([s[metric] for s in scores], dtype=np.float64)
        boot = values[picks].mean(axis=1)
        means[metric] = float(values.mean())
        intervals[metric] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    return means, intervals
