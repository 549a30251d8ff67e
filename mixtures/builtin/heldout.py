"""Held-out families: kept out of every training mixture, for zero-shot evaluation (FLAN's held-out clusters)."""

from __future__ import annotations

import random
from typing import Any

from flanforge.mixtures.builtin.core import Family, grid
from flanforge.mixtures.builtin.vocab import POOLS, words

ROMAN = ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"),
         (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))


def _roman_parts(n: int) -> list[tuple[int, str]]:
    parts = []
    for value, letters in ROMAN:
        while n >= value:
            parts.append((value, letters))
            n -= value
    return parts


def _roman(rng: random.Random, to_roman: bool, span: tuple[int, int], lower: bool) -> dict[str, Any]:
    n = rng.randint(*span)
    parts = _roman_parts(n)
    numeral = "".join(p for _, p in parts)
    numeral = numeral.lower() if lower else numeral
    rationale = f"{n} = {' + '.join(str(v) for v, _ in parts)}, written {' + '.join(p for _, p in parts)}."
    number, answer = (str(n), numeral) if to_roman else (numeral, str(n))
    return {"number": number, "target": "Roman numerals" if to_roman else "ordinary digits", "answer": answer,
            "rationale": rationale}


LABELS = {"yes_no": ("yes", "no"), "true_false": ("true", "false")}


def _anagram(rng: random.Random, pool: str, labels: str) -> dict[str, Any]:
    word = rng.choice([w for w in POOLS[pool] if len(set(w)) > 2])
    if rng.random() < 0.5:
        letters = list(word)
        while "".join(letters) == word:
            rng.shuffle(letters)
        other = "".join(letters)
    else:
        other = rng.choice([w for w in POOLS["mixed"] if sorted(w) != sorted(word)])
    yes, no = LABELS[labels]
    return {"word_a": word, "word_b": other, "options": [yes, no], "answer": yes if sorted(word) == sorted(other) else no}


def _spoonerism(rng: random.Random, pool: str, size: int) -> dict[str, Any]:
    while True:  # the two words must differ in what is swapped
        a, b = words(rng, pool, 2, 2)
        if a[:size] != b[:size] and min(len(a), len(b)) > size:
            return {"text": f"{a} {b}", "count": "letter" if size == 1 else "two letters",
                    "answer": f"{b[:size]}{a[size:]} {a[:size]}{b[size:]}"}


FAMILIES = (
    Family(
        "roman_numerals",
        _roman,
        grid(to_roman={"to_roman": True, "from_roman": False}, span={"small": (1, 99), "medium": (100, 999), "large": (1000, 3999)},
             lower={"upper": False, "lower": True}),
        (
            "Write the number in {{ target }}.",
            "Convert the number to {{ target }}.",
            "Express this number using {{ target }}.",
            "What is this number in {{ target }}?",
            "Rewrite the number as {{ target }}.",
            "Give the number in {{ target }}.",
            "Change the numeral into {{ target }}.",
            "Translate the number to {{ target }}.",
            "Turn this number into {{ target }}.",
            "Show the number written in {{ target }}.",
        ),
        ("{{ number }}", "Number: {{ number }}", "Input: {{ number }}"),
        rationale=True,
    ),
    Family(
        "anagram_check",
        _anagram,
        grid(pool=["mixed", "animal", "fruit", "color", "tool", "country"], labels=list(LABELS)),
        (
            "Are the two words anagrams of each other?",
            "Do both words use exactly the same letters?",
            "Check whether one word is a rearrangement of the other.",
            "Is the second word an anagram of the first?",
            "Can the letters of the first word be rearranged to spell the second?",
            "Tell whether these two strings are anagrams.",
            "Decide if the words contain the same letters the same number of times.",
            "Are these words made of identical letters in a different order?",
            "Determine if the pair is an anagram pair.",
            "Is one word a scrambled version of the other?",
        ),
        ("{{ word_a }} and {{ word_b }}", "Word 1: {{ word_a }}\nWord 2: {{ word_b }}", "{{ word_a }} / {{ word_b }}"),
        options=True,
    ),
    Family(
        "spoonerism",
        _spoonerism,
        grid(pool=list(POOLS), size={"one": 1, "two": 2}),
        (
            "Swap the first {{ count }} of the two words.",
            "Make a spoonerism: exchange the opening {{ count }} of the words.",
            "Trade the first {{ count }} between the two words.",
            "Switch the initial {{ count }} of the first word with those of the second.",
            "Exchange the beginnings of the two words (the first {{ count }}).",
            "Swap the leading {{ count }} of the words and write the result.",
            "Turn the phrase into a spoonerism by swapping the first {{ count }}.",
            "Move the first {{ count }} of each word to the other word.",
            "Write the two words with their first {{ count }} swapped.",
            "What do the words become if their first {{ count }} trade places?",
        ),
        ("{{ text }}", "Words: {{ text }}", "Phrase: {{ text }}"),
    ),
)
