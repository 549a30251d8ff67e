"""Mixtures: tasks and sub-mixtures with mixing rates, nested as the Flan collection nests its sources.

A member's rate is a number, examples-proportional with a cap (FLAN:
``min(n, cap)``), or examples-proportional with a temperature (T5:
``min(n, cap) ** (1 / T)``), as seqio's ``mixing_rate_num_examples``. Within a
mixture the members' rates are normalised to probabilities; a task's
effective probability is the product of the probabilities down its path.
Mixtures nest at most :data:`MAX_DEPTH` deep (a deeper one is an error naming
its chain), so walking one never meets Python's recursion limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

from flanforge.errors import did_you_mean
from flanforge.names import checked_name
from flanforge.mixtures.task import Task, TaskError


def check_weight(value: object, what: str) -> float:
    """``value`` as a float if it is a finite number >= 0, else a :class:`TaskError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise TaskError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def origin_of(task: Task) -> str:
    """Where a task comes from, for error messages: its YAML file, else its source's file when it has one."""
    if task.origin:
        return f"{task.family or 'task'} from {task.origin}"
    source = task.source
    path = (getattr(source, "path", None) or getattr(getattr(source, "file", None), "path", None)
            or getattr(source, "splits", {}).get("train"))
    return f"{task.family or 'task'} from {path}" if path else f"{task.family or 'task'} '{task.name}'"


@dataclass(frozen=True)
class Rate:
    """A mixing rate. ``Rate.fixed(w)`` or ``Rate.examples(cap=..., temperature=...)``."""

    weight: Optional[float] = None
    cap: Optional[int] = None
    temperature: float = 1.0

    @staticmethod
    def fixed(weight: float) -> "Rate":
        return Rate(weight=float(weight))

    @staticmethod
    def examples(cap: Optional[int] = None, temperature: float = 1.0) -> "Rate":
        return Rate(cap=cap, temperature=temperature)

    def __post_init__(self) -> None:
        if self.weight is not None:
            check_weight(self.weight, "rate weight")
        if not (isinstance(self.temperature, (int, float)) and 0 < self.temperature < math.inf):
            raise TaskError(f"rate temperature must be a finite number > 0, got {self.temperature!r}")
        if self.cap is not None and (isinstance(self.cap, bool) or not isinstance(self.cap, int) or self.cap < 0):
            raise TaskError(f"rate cap must be an integer >= 0, got {self.cap!r}")

    def value(self, num_examples: int) -> float:
        if self.weight is not None:
            return self.weight
        n = num_examples if self.cap is None else min(num_examples, self.cap)
        try:
            return float(n) ** (1.0 / self.temperature)
        except OverflowError:
            raise TaskError(f"rate temperature {self.temperature} is too small: {n} examples give an infinite rate") from None


Member = Union[Task, "Mixture"]
MAX_DEPTH = 32
"""Mixtures nest at most this deep (FLAN 2022's collection nests 3 levels)."""


@dataclass
class Mixture:
    """Named members (tasks or sub-mixtures), each with a rate."""

    name: str
    members: list[tuple[Member, Rate]]
    chain: list[str] = field(init=False, repr=False, compare=False)
    """The names down its deepest path of sub-mixtures, itself first."""

    def __post_init__(self) -> None:
        self.name = checked_name(self.name, "mixture")
        subs = [m for m, _ in self.members if isinstance(m, Mixture)]
        self.chain = [self.name, *max((m.chain for m in subs), key=len, default=[])]
        if len(self.chain) > MAX_DEPTH:
            raise TaskError(f"mixture '{self.name}': nested {len(self.chain)} mixtures deep, more than the limit of "
                            f"{MAX_DEPTH} ({' > '.join(self.chain[:3])} > ... > {self.chain[-1]})")
        names = [m.name for m, _ in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TaskError(f"mixture '{self.name}': member(s) listed twice: {dupes}")
        if not self.members:
            raise TaskError(f"mixture '{self.name}': has no members")
        self._check_task_names()

    def _check_task_names(self) -> None:
        """Two different tasks under one name are an error, whichever sources they come from and
        whatever their order: records are looked up by task name, so one would silently shadow
        the other. The same task object reached through two sub-mixtures is fine."""
        seen: dict[str, Task] = {}
        for _, member, _ in self.walk():
            if isinstance(member, Task) and seen.setdefault(member.name, member) is not member:
                first = seen[member.name]
                raise TaskError(
                    f"mixture '{self.name}': two different tasks are named '{member.name}' "
                    f"({origin_of(first)} and {origin_of(member)}); rename one of them"
                )

    def walk(self) -> Iterator[tuple["Mixture", Member, Rate]]:
        """``(parent, member, rate)`` for every member at every depth, depth first."""
        for member, rate in self.members:
            yield self, member, rate
            if isinstance(member, Mixture):
                yield from member.walk()

    def num_examples(self, split: str = "train") -> int:
        return sum(m.num_examples(split) for m, _ in self.members)

    def member_weights(self, overrides: dict[str, float] | None = None) -> dict[str, float]:
        """Normalised weights of the direct members; ``overrides`` replaces a member's rate value by name."""
        overrides = overrides or {}
        raw = {m.name: overrides.get(m.name, r.value(m.num_examples())) for m, r in self.members}
        for name, value in overrides.items():
            check_weight(value, f"mixture '{self.name}': weight override '{name}'")
        total = sum(raw.values())
        if not math.isfinite(total):
            raise TaskError(f"mixture '{self.name}': the rates of its members add up to infinity ({total})")
        if total <= 0:
            raise TaskError(f"mixture '{self.name}': every rate is zero, nothing can be sampled")
        return {k: v / total for k, v in raw.items()}

    def rates(self, overrides: dict[str, float] | None = None) -> dict[str, float]:
        """Effective sampling probability of every task, summing to 1.

        ``overrides`` maps a member name (usually a sub-mixture) at any depth to
        a raw weight that replaces its rate's value; an unknown name is an error.
        """
        overrides = overrides or {}
        known = {m.name for _, m, _ in self.walk()}
        for name in overrides:
            if name not in known:
                hint = did_you_mean(name, sorted(known), n=3, cutoff=0.4)
                raise TaskError(f"mixture '{self.name}': no member '{name}' to override{hint}")
        return self._rates(overrides)

    def _rates(self, overrides: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        weights = self.member_weights(overrides)
        for member, _ in self.members:
            w = weights[member.name]
            if w == 0:
                continue
            inner = member._rates(overrides) if isinstance(member, Mixture) else {member.name: 1.0}
            for task, p in inner.items():
                out[task] = out.get(task, 0.0) + w * p
        return out

    def tasks(self) -> list[Task]:
        """Every task once, in depth-first order."""
        found: dict[str, Task] = {}
        for _, member, _ in self.walk():
            if isinstance(member, Task):
                found.setdefault(member.name, member)
        return list(found.values())

    def without(self, names: set[str]) -> "Mixture | None":
        """The mixture without the members (at any depth) named in ``names``, and without the sub-mixtures
        that leaves empty (None when nothing is left); itself when nothing is removed."""
        kept = []
        for member, rate in self.members:
            if isinstance(member, Mixture):
                member = member.without(names)
            if member is not None and member.name not in names:
                kept.append((member, rate))
        if len(kept) == len(self.members) and all(a is b for (a, _), (b, _) in zip(kept, self.members)):
            return self
        return Mixture(self.name, kept) if kept else None

    def group_of(self) -> dict[str, str]:
        """Task name -> the top-level sub-mixture it belongs to (the mixture's own name for direct tasks)."""
        out: dict[str, str] = {}
        for member, _ in self.members:
            group = [member] if isinstance(member, Task) else member.tasks()
            for task in group:
                out.setdefault(task.name, member.name if isinstance(member, Mixture) else self.name)
        return out
