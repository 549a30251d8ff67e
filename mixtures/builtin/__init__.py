"""The built-in procedural task suite: offline, deterministic from a seed.

Each family is a generator of records plus instruction phrasings written for
it; a family yields several tasks by varying its parameters.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any, Callable

from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.task import Task, Template

WORDS = (
    "apple river stone cloud tiger maple orange silver garden window candle forest "
    "pencil rocket summer winter yellow planet bridge castle coffee dragon engine "
    "flower guitar harbor island jacket kettle lemon marble needle ocean pepper "
    "quartz rabbit saddle tunnel violet walnut zebra anchor basket copper desert"
).split()

SPLIT_SIZES = {"train": 2000, "exemplars": 64, "validation": 200}


def _words(rng: random.Random, lo: int, hi: int) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


def _reverse_words(rng: random.Random, n: int) -> dict[str, Any]:
    words = _words(rng, 2, n)
    return {"text": " ".join(words), "answer": " ".join(reversed(words))}


def _sort_numbers(rng: random.Random, n: int) -> dict[str, Any]:
    nums = [rng.randint(0, 99) for _ in range(rng.randint(2, n))]
    return {"numbers": ", ".join(map(str, nums)), "answer": ", ".join(map(str, sorted(nums)))}


def _add_numbers(rng: random.Random, n: int) -> dict[str, Any]:
    a, b = rng.randint(0, 10**n - 1), rng.randint(0, 10**n - 1)
    return {"a": a, "b": b, "answer": str(a + b), "rationale": f"{a} plus {b} is {a + b}."}


def _count_letter(rng: random.Random, n: int) -> dict[str, Any]:
    words = _words(rng, 1, n)
    letter = rng.choice("aeiou")
    text = " ".join(words)
    return {"text": text, "letter": letter, "answer": str(text.count(letter))}


FAMILIES: dict[str, tuple[Callable[[random.Random, int], dict[str, Any]], tuple[str, ...], list[Template]]] = {
    "reverse_words": (
        _reverse_words,
        ("text", "answer"),
        [
            Template("rw0", "Reverse the order of the words.\n{{ text }}"),
            Template("rw1", "Write these words backwards, last word first: {{ text }}"),
            Template("rw2", "{{ text }}\nWhat is this sentence with its words in reverse order?"),
        ],
    ),
    "sort_numbers": (
        _sort_numbers,
        ("numbers", "answer"),
        [
            Template("sn0", "Sort these numbers from smallest to largest: {{ numbers }}"),
            Template("sn1", "Put in ascending order.\n{{ numbers }}"),
            Template("sn2", "Numbers: {{ numbers }}\nList them sorted, smallest first."),
        ],
    ),
    "add_numbers": (
        _add_numbers,
        ("a", "b", "answer", "rationale"),
        [
            Template("an0", "What is {{ a }} + {{ b }}?"),
            Template("an1", "Add {{ a }} and {{ b }}."),
            Template("an2", "Compute the sum of {{ a }} and {{ b }}. Explain briefly.", "{{ rationale }} The answer is {{ answer }}."),
        ],
    ),
    "count_letter": (
        _count_letter,
        ("text", "letter", "answer"),
        [
            Template("cl0", "How many times does the letter '{{ letter }}' appear in: {{ text }}"),
            Template("cl1", "Count the '{{ letter }}' characters.\n{{ text }}"),
            Template("cl2", "{{ text }}\nNumber of '{{ letter }}'s in the text above?"),
        ],
    ),
}


def _make_source(family: str, param: int, seed: int) -> Callable[[str], list[dict[str, Any]]]:
    gen = FAMILIES[family][0]

    @lru_cache(maxsize=None)
    def records(split: str) -> list[dict[str, Any]]:
        rng = random.Random(f"{seed}/{family}/{param}/{split}")
        return [gen(rng, param) for _ in range(SPLIT_SIZES[split])]

    return records


def make_task(family: str, param: int, seed: int = 0) -> Task:
    _, fields, templates = FAMILIES[family]
    return Task(
        name=f"{family}_{param}",
        fields=fields,
        templates=tuple(templates),
        source=_make_source(family, param, seed),
        family=family,
    )


def demo_mixture() -> Mixture:
    """A handful of procedural tasks in two sub-mixtures, examples-proportional with caps."""
    from flanforge.mixtures.registry import register_task

    words = Mixture(
        "words",
        [(register_task(make_task(f, p)), Rate.examples(cap=1500)) for f in ("reverse_words", "count_letter") for p in (4, 6)],
    )
    numbers = Mixture(
        "numbers",
        [(register_task(make_task(f, p)), Rate.examples(cap=1500)) for f in ("sort_numbers", "add_numbers") for p in (3, 5)],
    )
    return Mixture("demo", [(words, Rate.fixed(1.0)), (numbers, Rate.fixed(1.0))])


def register_all() -> None:
    from flanforge.mixtures.registry import register_mixture

    register_mixture("demo", demo_mixture)
