"""Counting: letters, words, members of a category, lengths and occurrences."""

from __future__ import annotations

import random
import string
from typing import Any

from flanforge.mixtures.builtin.core import Family, TEXT_INPUTS, grid
from flanforge.mixtures.builtin.vocab import CATEGORIES, CATEGORY_OF, PLURALS, POOLS, words

VOWELS = set("aeiou")
SIZES = {"short": (2, 4), "medium": (4, 6), "long": (6, 9)}


def _count_letter(rng: random.Random, letter: str, size: tuple[int, int]) -> dict[str, Any]:
    ws = words(rng, "mixed", *size)
    counts = [(w, w.count(letter)) for w in ws]
    found = [f"{w} has {n}" for w, n in counts if n]
    total = sum(n for _, n in counts)
    rationale = (", ".join(found) + f"; {' + '.join(str(n) for _, n in counts if n)} = {total}.") if found else "No word contains it."
    return {"text": " ".join(ws), "letter": letter, "answer": str(total), "rationale": rationale}


def _count_words(rng: random.Random, pool: str, size: tuple[int, int]) -> dict[str, Any]:
    ws = rng.choices(POOLS[pool], k=rng.randint(*size))
    return {"text": " ".join(ws), "answer": str(len(ws))}


def _count_category(rng: random.Random, category: str, size: tuple[int, int]) -> dict[str, Any]:
    ws = rng.sample(POOLS["mixed"], rng.randint(*size))
    k = rng.randint(0, min(4, len(ws)))
    ws[:k] = rng.sample(CATEGORIES[category], k)
    ws = list(dict.fromkeys(ws))
    rng.shuffle(ws)
    members = [w for w in ws if CATEGORY_OF[w] == category]
    rationale = f"The {PLURALS[category]} are {', '.join(members)}, which makes {len(members)}." if members else f"None of them are {PLURALS[category]}."
    return {"text": ", ".join(ws), "category": PLURALS[category], "answer": str(len(members)), "rationale": rationale}


def _count_vowels(rng: random.Random, pool: str, kind: str) -> dict[str, Any]:
    ws = words(rng, pool, 1, 3)
    text = " ".join(ws)
    letters = [c for c in text if c.isalpha() and (c in VOWELS) == (kind == "vowels")]
    return {"text": text, "kind": kind, "answer": str(len(letters))}


def _word_lengths(rng: random.Random, pool: str, sep: str) -> dict[str, Any]:
    ws = words(rng, pool, 2, 5)
    return {"text": " ".join(ws), "answer": sep.join(str(len(w)) for w in ws)}


OCCURRENCE_POOLS = {"digits": tuple(string.digits), "metals": CATEGORIES["metal"][:6], "tools": CATEGORIES["tool"][:6],
                    "colors": CATEGORIES["color"][:6], "fruits": CATEGORIES["fruit"][:6]}


def _occurrences(rng: random.Random, pool: str, size: tuple[int, int]) -> dict[str, Any]:
    items = rng.choices(OCCURRENCE_POOLS[pool], k=rng.randint(*size))
    item = rng.choice(OCCURRENCE_POOLS[pool])
    return {"items": ", ".join(items), "item": item, "answer": str(items.count(item))}


def _extreme_word(rng: random.Random, pool: str, longest: bool) -> dict[str, Any]:
    while True:  # redraw until the answer is unique
        ws = words(rng, pool, 3, 6)
        target = (max if longest else min)(len(w) for w in ws)
        winners = [w for w in ws if len(w) == target]
        if len(winners) == 1:
            return {"text": ", ".join(ws), "which": "longest" if longest else "shortest", "answer": winners[0]}


DISTINCT_POOLS = {"digits": string.digits, "letters": string.ascii_lowercase[:8], "words": CATEGORIES["animal"][:8]}


def _count_distinct(rng: random.Random, pool: str, size: tuple[int, int]) -> dict[str, Any]:
    items = rng.choices(DISTINCT_POOLS[pool], k=rng.randint(*size))
    return {"items": ", ".join(items), "answer": str(len(set(items)))}


FAMILIES = (
    Family(
        "count_letter",
        _count_letter,
        grid(letter=list(string.ascii_lowercase), size=SIZES),
        (
            "How many times does the letter '{{ letter }}' appear?",
            "Count the occurrences of '{{ letter }}' in the text.",
            "How many '{{ letter }}'s are there in the text?",
            "Give the number of times the letter {{ letter }} is used.",
            "Count every '{{ letter }}' in the words below.",
            "What is the total count of the letter '{{ letter }}'?",
            "Tally the letter '{{ letter }}' across all the words.",
            "Find how often '{{ letter }}' occurs in the text.",
            "Report the number of '{{ letter }}' characters.",
            "In the text, how many letters are '{{ letter }}'?",
        ),
        TEXT_INPUTS,
        rationale=True,
    ),
    Family(
        "count_words",
        _count_words,
        grid(pool=list(POOLS), size={"short": (2, 6), "long": (6, 12)}),
        (
            "How many words are in the text?",
            "Count the words.",
            "Give the number of words in the text below.",
            "What is the word count?",
            "Count how many words the text has, repeats included.",
            "Report the total number of words.",
            "How long is the text in words?",
            "Tally the words in the following text.",
            "Find the number of words.",
            "Count every word, even those that repeat.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "count_category",
        _count_category,
        grid(category=list(CATEGORIES), size={"short": (3, 6), "long": (7, 10)}),
        (
            "How many {{ category }} are in the list?",
            "Count the {{ category }} among these words.",
            "How many of the words name {{ category }}?",
            "Give the number of {{ category }} in the list.",
            "Count the items in the list that are {{ category }}.",
            "Of the words below, how many are {{ category }}?",
            "Tally the {{ category }} in the list.",
            "Find how many {{ category }} the list contains.",
            "What is the count of {{ category }} here?",
            "Report the number of list entries that are {{ category }}.",
        ),
        ("{{ text }}", "List: {{ text }}", "Words: {{ text }}"),
        rationale=True,
    ),
    Family(
        "count_vowels",
        _count_vowels,
        grid(pool=list(POOLS), kind=["vowels", "consonants"]),
        (
            "How many {{ kind }} does the text contain?",
            "Count the {{ kind }}.",
            "Give the number of {{ kind }} in the text (a, e, i, o, u are vowels).",
            "What is the total number of {{ kind }}?",
            "Count every one of the {{ kind }} in the words below.",
            "How many letters in the text are {{ kind }}?",
            "Tally the {{ kind }} in the following.",
            "Report how many {{ kind }} appear.",
            "Find the number of {{ kind }}; spaces do not count.",
            "Count the letters that are {{ kind }}.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "word_lengths",
        _word_lengths,
        grid(pool=list(POOLS), sep={"comma": ", ", "space": " "}),
        (
            "Give the length of each word.",
            "For every word, write how many letters it has.",
            "List the number of letters in each word, in order.",
            "How long is each word? Answer with numbers.",
            "Count the letters of every word.",
            "Replace each word by its length.",
            "Write the letter count of each word in the text.",
            "What are the word lengths?",
            "Measure each word in letters.",
            "Return the length of every word, keeping the order.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "count_occurrences",
        _occurrences,
        grid(pool=list(OCCURRENCE_POOLS), size={"short": (4, 7), "long": (8, 14)}),
        (
            "How many times does the item appear in the list?",
            "Count the occurrences of the item.",
            "Give the number of times the item occurs.",
            "How often is the item listed?",
            "Count how many entries equal the item.",
            "Find the number of copies of the item in the list.",
            "Tally the item in the list.",
            "Report how many times the list mentions the item.",
            "What is the count of the given item?",
            "Count the item's appearances.",
        ),
        ("List: {{ items }}\nItem: {{ item }}", "[{{ items }}]\nCount: {{ item }}", "Items: {{ items }}\nLook for: {{ item }}"),
    ),
    Family(
        "extreme_word",
        _extreme_word,
        grid(pool=list(POOLS), longest={"longest": True, "shortest": False}),
        (
            "Which word is the {{ which }}?",
            "Find the {{ which }} word.",
            "Give the {{ which }} word in the list.",
            "Pick out the {{ which }} of these words.",
            "What is the {{ which }} word here?",
            "Return the {{ which }} word.",
            "Identify the word that is the {{ which }}.",
            "Which of the words is the {{ which }}?",
            "Name the {{ which }} word in the following.",
            "Select the {{ which }} word.",
        ),
        ("{{ text }}", "Words: {{ text }}", "List: {{ text }}"),
    ),
    Family(
        "count_distinct",
        _count_distinct,
        grid(pool=list(DISTINCT_POOLS), size={"short": (4, 7), "long": (8, 14)}),
        (
            "How many different items are in the list?",
            "Count the distinct values.",
            "Give the number of unique entries.",
            "How many different things does the list contain?",
            "Count the items, ignoring repeats.",
            "What is the number of distinct elements?",
            "Find how many unique items appear.",
            "Report the count of different entries.",
            "Tally the distinct items in the list.",
            "How many kinds of item are listed?",
        ),
        ("{{ items }}", "List: {{ items }}", "Items: [{{ items }}]"),
    ),
)
