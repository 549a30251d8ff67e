"""What is evaluated: a suite's tasks, each a list of prompts in one format with how they are scored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flanforge.errors import TaskError


@dataclass(frozen=True)
class EvalExample:
    """One prompt with what it is scored against."""

    prompt: str
    references: tuple[str, ...]
    options: tuple[str, ...] = ()
    """Answer options, for rank classification."""
    correct: tuple[int, ...] = ()
    """Indices of the correct options."""


@dataclass
class EvalTask:
    """A task's examples in one format, with how they are scored."""

    name: str
    cluster: str
    metric: str
    """``accuracy`` (rank classification), ``exact_match`` or ``rouge``: see ``launcher/evaluation/metrics.py``."""
    format: str
    examples: list[EvalExample]
    max_new_tokens: int = 64
    stops: tuple[str, ...] = ()
    """Generation ends at the first of these (and at EOS); the text is cut there."""
    answer_pattern: re.Pattern[str] | None = None
    """Chain of thought: the answer is the rest of the line after the pattern's last match."""
    bad_records: int = 0
    """Source records skipped as bad (``--on-bad-record skip``): reported beside the scores."""

    def __post_init__(self) -> None:
        if not self.examples:  # its scores would be NaN
            raise TaskError(f"task '{self.name}' ({self.cluster}): no examples to score")


@dataclass
class Suite:
    name: str
    tasks: list[EvalTask]
    skipped: dict[str, str] = field(default_factory=dict)
    """Tasks left out by policy (no format of the requested kind), with why: counted in the report."""
    weighted: bool = False
    """Means weight tasks by their examples, per cluster too (MMLU: subjects by questions, clusters are its
    categories); the unweighted mean over tasks is reported beside them."""
    split: str | None = None
    """The split scored, where the suite chose it itself (MMLU: test unless ``--split`` names another)."""
