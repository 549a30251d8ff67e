"""Machinery of the built-in suite: task families and their lazily generated records.

A :class:`Family` is a record generator, a grid of variants (one task each)
and at least ten instruction phrasings written for it. A task's records are
never stored: record ``i`` of a split is drawn from an RNG seeded with
``(seed, task, split, i)``. Splits partition the instance space by a hash of
the record's content (1/8 exemplars, 1/8 validation, 6/8 train), so an
exemplar or validation record can never equal a training record.
"""

from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, ClassVar, Mapping, Sequence

from flanforge.mixtures.sources.base import record_key
from flanforge.mixtures.task import Task, TaskError, Template

SUITE_SEED = 0
BUCKETS = ("exemplars", "validation") + ("train",) * 6
EXEMPLARS, VALIDATION = 32, 100
TRAIN_SIZES = (300, 4000)
"""Train records per task: a size in this range fixed by the task's name, so caps bite on some tasks."""
MAX_DRAWS = 400
MIN_PHRASINGS = 10

TEXT_INPUTS = ("{{ text }}", "Text: {{ text }}", '"{{ text }}"')
NUMBER_INPUTS = ("{{ number }}", "Number: {{ number }}", "n = {{ number }}")
"""Input layouts shared by the families whose input is one ``text`` or one ``number`` field."""

Make = Callable[..., dict[str, Any]]
"""``make(rng, **variant) -> record``; the record's keys are the task's fields."""


def grid(**axes: Mapping[str, Any] | Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Every combination of the axes: ``grid(pool=["animal", "fruit"], n={"two": 2, "three": 3})`` -> ``{"animal_two": {...}, ...}``.

    An axis is a mapping of tag -> value, or a sequence of values tagged by ``str(value)``.
    """
    named = [list(a.items()) if isinstance(a, Mapping) else [(str(v), v) for v in a] for a in axes.values()]
    return {
        "_".join(tag for tag, _ in combo): {key: value for key, (_, value) in zip(axes, combo)}
        for combo in itertools.product(*named)
    }


def split_of(record: dict[str, Any]) -> str:
    return BUCKETS[zlib.crc32(record_key(record).encode()) % len(BUCKETS)]


class GeneratedRecords(Sequence[dict[str, Any]]):
    """One split of a generated task, ``len`` records long, each generated on access (and kept if ``keep``)."""

    def __init__(self, make: Make, params: dict[str, Any], key: str, split: str, size: int, keep: bool = False):
        self.make, self.params, self.key, self.split, self.size = make, params, key, split, size
        self.kept: dict[int, dict[str, Any]] | None = {} if keep else None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.size))]
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(i)
        if self.kept is not None and i in self.kept:
            return self.kept[i]
        for draw in range(MAX_DRAWS):
            record = self.make(random.Random(f"{self.key}/{self.split}/{i}/{draw}"), **self.params)
            if split_of(record) == self.split:
                if self.kept is not None:
                    self.kept[i] = record
                return record
        raise TaskError(f"task '{self.key}': no {self.split} record in {MAX_DRAWS} draws; its instance space is too small")


@dataclass
class GeneratedSource:
    """A ``Task.source`` over :class:`GeneratedRecords`; exemplars, drawn again and again, are kept once made."""

    make: Make
    params: dict[str, Any]
    key: str
    train_size: int
    random_access: ClassVar[bool] = True
    """Record ``i`` is made on demand, cheaply and always the same: ``prepare`` writes no shards for it."""

    def __call__(self, split: str) -> Sequence[dict[str, Any]]:
        if split == "exemplars":
            return self.exemplars
        return GeneratedRecords(self.make, self.params, self.key, split, VALIDATION if split == "validation" else self.train_size)

    @cached_property
    def exemplars(self) -> GeneratedRecords:
        return GeneratedRecords(self.make, self.params, self.key, "exemplars", EXEMPLARS, keep=True)


@dataclass(frozen=True)
class Family:
    """A procedural task family: one task per variant, each rendered with every phrasing."""

    name: str
    make: Make
    variants: dict[str, dict[str, Any]]
    """Variant tag -> keyword arguments of ``make``; task ``<name>_<tag>``."""
    instructions: tuple[str, ...]
    """At least ten instruction phrasings (jinja over the record's fields)."""
    inputs: tuple[str, ...] = ("{{ text }}",)
    """Input layouts, paired with the phrasings in turn."""
    target: str = "{{ answer }}"
    inverted: tuple[tuple[str, str, str], ...] = ()
    """``(instruction, input, target)`` phrasings that give the answer and ask for the input."""
    options: bool = False
    """Records carry ``options`` (answer choices)."""
    rationale: bool = False
    """Records carry a worked ``rationale``."""

    def __post_init__(self) -> None:
        if len(self.instructions) < MIN_PHRASINGS or len(set(self.instructions)) != len(self.instructions):
            raise TaskError(f"family '{self.name}': needs {MIN_PHRASINGS} distinct phrasings, has {len(set(self.instructions))}")

    @cached_property
    def templates(self) -> tuple[Template, ...]:
        n = len(self.inputs)
        return tuple(Template(f"{self.name}.{i}", self.inputs[i % n], self.target, s) for i, s in enumerate(self.instructions))

    @cached_property
    def inverted_templates(self) -> tuple[Template, ...]:
        return tuple(Template(f"{self.name}.inv{i}", x, y, s) for i, (s, x, y) in enumerate(self.inverted))

    def formats(self) -> tuple[str, ...]:
        kinds = ["noopt"] + ["opt"] * self.options + ["cot"] * self.rationale + ["inv"] * bool(self.inverted)
        return tuple(f"{shots}_{kind}" for shots in ("zs", "fs") for kind in kinds)

    def task(self, tag: str, *, name: str | None = None, seed: int = SUITE_SEED, **overrides: Any) -> Task:
        """The task of variant ``tag``; ``overrides`` replace Task settings (the demo uses this)."""
        name = name or f"{self.name}_{tag}"
        params = self.variants[tag]
        fields = tuple(self.make(random.Random(0), **params))
        lo, hi = TRAIN_SIZES
        settings: dict[str, Any] = {
            "formats": self.formats(),
            "family": self.name,
            "options_field": "options" if self.options else None,
            "rationale_field": "rationale" if self.rationale else None,
            "inverted_templates": self.inverted_templates,
            # FLAN scores tasks with answer options by rank classification.
            "metric": "accuracy" if self.options else "exact_match",
            **overrides,
        }
        train_size = lo + zlib.crc32(name.encode()) % (hi - lo)
        source = GeneratedSource(self.make, params, f"{seed}/{name}", train_size)
        return Task(name=name, fields=fields, templates=self.templates, source=source, **settings)

    def tasks(self) -> list[Task]:
        return [self.task(tag) for tag in self.variants]
