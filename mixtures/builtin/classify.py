"""Rule-based classification: sentiment by lexicon, topic by category, parity, palindromes, odd one out."""

from __future__ import annotations

import itertools
import random
from typing import Any

from flanforge.mixtures.builtin.core import Family, NUMBER_INPUTS, grid
from flanforge.mixtures.builtin.vocab import CATEGORIES, POOLS, words

DOMAINS = {
    "movie": ("movie", ("plot", "acting", "soundtrack", "ending", "pacing")),
    "restaurant": ("restaurant", ("food", "service", "dessert", "menu", "staff")),
    "hotel": ("hotel", ("room", "bed", "breakfast", "staff", "view")),
    "phone": ("phone", ("battery", "screen", "camera", "speaker", "case")),
    "book": ("book", ("story", "writing", "characters", "ending", "cover")),
    "game": ("game", ("graphics", "controls", "story", "music", "levels")),
    "concert": ("concert", ("band", "sound", "crowd", "venue", "lights")),
    "app": ("app", ("design", "speed", "features", "updates", "support")),
    "laptop": ("laptop", ("keyboard", "battery", "screen", "fan", "trackpad")),
    "park": ("park", ("paths", "trees", "playground", "benches", "lake")),
}
POSITIVE = ("great", "wonderful", "excellent", "lovely", "superb", "delightful", "fantastic", "brilliant", "pleasant", "charming")
NEGATIVE = ("awful", "terrible", "dreadful", "poor", "disappointing", "boring", "horrible", "annoying", "weak", "clumsy")
SENTIMENT_LABELS = {
    "pos_neg": ("positive", "negative"),
    "good_bad": ("good", "bad"),
    "like": ("liked it", "did not like it"),
    "stars": ("5 stars", "1 star"),
    "recommend": ("recommended", "not recommended"),
}


def _sentiment(rng: random.Random, domain: str, labels: str) -> dict[str, Any]:
    thing, aspects = DOMAINS[domain]
    positive = rng.random() < 0.5
    adjectives = POSITIVE if positive else NEGATIVE
    chosen = rng.sample(aspects, rng.randint(1, 3))
    clauses = [f"the {a} was {rng.choice(adjectives)}" for a in chosen]
    listed = ", ".join(clauses[:-1]) + " and " + clauses[-1] if len(clauses) > 1 else clauses[0]
    review = f"The {thing} was {rng.choice(adjectives)}: {listed}."
    good, bad = SENTIMENT_LABELS[labels]
    return {"review": review, "thing": thing, "options": [good, bad], "answer": good if positive else bad}


def _category_sets(size: int, count: int) -> dict[str, tuple[str, ...]]:
    """``count`` label sets of ``size`` categories, spread evenly over all combinations."""
    combos = list(itertools.combinations(sorted(CATEGORIES), size))
    step = len(combos) / count
    return {"_".join(c): c for c in (combos[int(i * step)] for i in range(count))}


def _topic(rng: random.Random, labels: tuple[str, ...]) -> dict[str, Any]:
    category = rng.choice(labels)
    return {"text": ", ".join(rng.sample(CATEGORIES[category], 3)), "labels": ", ".join(labels), "options": list(labels), "answer": category}


PARITY_LABELS = {"even_odd": ("even", "odd"), "yes_no": ("yes", "no")}


def _parity(rng: random.Random, labels: str, digits: int) -> dict[str, Any]:
    n = rng.randint(10 ** (digits - 1), 10**digits - 1)
    even, odd = PARITY_LABELS[labels]
    return {"number": n, "options": [even, odd], "answer": even if n % 2 == 0 else odd,
            "rationale": f"The last digit of {n} is {n % 10}, which is {'even' if n % 2 == 0 else 'odd'}."}


BUCKETS = {"tens": (10, 100), "hundreds": (100, 1000), "mixed": (50, 500), "thousands": (1000, 10000)}
SIZE_LABELS = {"small_large": ("small", "medium", "large"), "low_high": ("low", "middle", "high")}


def _size_bucket(rng: random.Random, bounds: str, labels: str) -> dict[str, Any]:
    lo, hi = BUCKETS[bounds]
    n = rng.randint(0, 2 * hi)
    names = SIZE_LABELS[labels]
    answer = names[0] if n < lo else names[1] if n < hi else names[2]
    return {"number": n, "low": lo, "high": hi, "options": list(names), "answer": answer}


def _odd_one_out(rng: random.Random, pair: tuple[str, str]) -> dict[str, Any]:
    main, other = pair
    group = rng.sample(CATEGORIES[main], 3)
    odd = rng.choice(CATEGORIES[other])
    ws = [*group, odd]
    rng.shuffle(ws)
    return {"text": ", ".join(ws), "options": ws, "answer": odd,
            "rationale": f"{', '.join(group)} belong to the category {main}; {odd} belongs to {other}."}


def _category_pairs(count: int) -> dict[str, tuple[str, str]]:
    pairs = list(itertools.permutations(sorted(CATEGORIES), 2))
    step = len(pairs) / count
    return {f"{a}_vs_{b}": (a, b) for a, b in (pairs[int(i * step)] for i in range(count))}


def _palindrome(rng: random.Random, kind: str, labels: str) -> dict[str, Any]:
    make = rng.random() < 0.5
    if kind == "numbers":
        half = str(rng.randint(1, 9999))
        text = half + half[::-1][rng.randint(0, 1):] if make else str(rng.randint(10, 10**7))
    else:
        letters = "abcdefgh" if kind == "letters" else rng.choice(POOLS["mixed"])
        half = "".join(rng.choice(letters) for _ in range(rng.randint(2, 5)))
        text = half + half[::-1][rng.randint(0, 1):] if make else "".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
    yes, no = PARITY_LABELS["yes_no"] if labels == "yes_no" else ("palindrome", "not a palindrome")
    return {"text": text, "options": [yes, no], "answer": yes if text == text[::-1] else no}


def _is_sorted(rng: random.Random, kind: str, order: str, labels: str) -> dict[str, Any]:
    items = rng.sample(range(100), rng.randint(4, 7)) if kind == "numbers" else words(rng, "mixed", 4, 7)
    if rng.random() < 0.5:
        items = sorted(items, reverse=order == "descending")
    ok = items == sorted(items, reverse=order == "descending")
    yes, no = ("yes", "no") if labels == "yes_no" else ("sorted", "not sorted")
    return {"items": ", ".join(map(str, items)), "order": order, "options": [yes, no], "answer": yes if ok else no}


FAMILIES = (
    Family(
        "sentiment",
        _sentiment,
        grid(domain=list(DOMAINS), labels=list(SENTIMENT_LABELS)),
        (
            "Is this {{ thing }} review positive or negative?",
            "What is the sentiment of the review?",
            "Did the reviewer enjoy the {{ thing }}?",
            "Classify the review by its overall opinion.",
            "Read the {{ thing }} review and decide how the writer felt.",
            "Is the reviewer happy with the {{ thing }}?",
            "Label the review with its sentiment.",
            "How would you rate this review's attitude towards the {{ thing }}?",
            "Does this review praise or criticise the {{ thing }}?",
            "Determine the opinion expressed in the review.",
        ),
        ("{{ review }}", "Review: {{ review }}", '"{{ review }}"'),
        inverted=(
            ("Write a short {{ thing }} review with this verdict.", "Verdict: {{ answer }}", "{{ review }}"),
            ("Give an example of a {{ thing }} review labelled as follows.", "{{ answer }}", "{{ review }}"),
        ),
        options=True,
    ),
    Family(
        "topic",
        _topic,
        grid(labels={**_category_sets(3, 110), **_category_sets(4, 50)}),
        (
            "Which category do these words belong to: {{ labels }}?",
            "Classify the words into one of these categories: {{ labels }}.",
            "What kind of things are listed? Choose from {{ labels }}.",
            "Name the category of the words ({{ labels }}).",
            "The words all belong to one category among {{ labels }}. Which one?",
            "Pick the topic of the list from: {{ labels }}.",
            "Assign the words a label from {{ labels }}.",
            "Decide which of {{ labels }} describes the words.",
            "Categorise the list as one of: {{ labels }}.",
            "What do these words have in common? Answer with one of {{ labels }}.",
        ),
        ("{{ text }}", "Words: {{ text }}", "List: {{ text }}"),
        inverted=(("List three words of the given category.", "Category: {{ answer }}", "{{ text }}"),),
        options=True,
    ),
    Family(
        "parity",
        _parity,
        grid(labels=list(PARITY_LABELS), digits=[2, 3, 4, 6, 9, 12]),
        (
            "Is the number even?",
            "Decide whether the number is even or odd.",
            "Classify the number by parity.",
            "Is this number divisible by 2?",
            "Tell whether the number is even.",
            "Check the parity of the number.",
            "Does the number split into two equal whole halves?",
            "Even or odd?",
            "Determine if the number is an even number.",
            "Label the number by whether it is even.",
        ),
        NUMBER_INPUTS,
        options=True,
        rationale=True,
    ),
    Family(
        "size_bucket",
        _size_bucket,
        grid(bounds=list(BUCKETS), labels=list(SIZE_LABELS)),
        (
            "Numbers below {{ low }} are {{ options[0] }}, below {{ high }} {{ options[1] }}, the rest {{ options[2] }}. Classify the number.",
            "Sort the number into a band: under {{ low }}, under {{ high }}, or {{ high }} and above.",
            "Which band is the number in? The bands split at {{ low }} and {{ high }}.",
            "Label the number by size, using the limits {{ low }} and {{ high }}.",
            "Classify the number; the thresholds are {{ low }} and {{ high }}.",
            "Put the number in the lower band (below {{ low }}), the middle band (below {{ high }}) or the upper band.",
            "Given cut-offs at {{ low }} and {{ high }}, how would you label this number?",
            "Decide the size band of the number with boundaries {{ low }} and {{ high }}.",
            "Bucket the number by comparing it with {{ low }} and {{ high }}.",
            "Name the band of the number (limits {{ low }} and {{ high }}).",
        ),
        NUMBER_INPUTS,
        options=True,
    ),
    Family(
        "odd_one_out",
        _odd_one_out,
        grid(pair=_category_pairs(60)),
        (
            "Which word does not belong with the others?",
            "Find the odd one out.",
            "One of these words is different from the rest. Which one?",
            "Pick the word that does not fit.",
            "Which item is out of place in the list?",
            "Three words share a category. Name the fourth, which does not.",
            "Spot the word that belongs to a different category.",
            "Identify the intruder among these words.",
            "Which of the words is the odd one?",
            "Name the word that is unlike the others.",
        ),
        ("{{ text }}", "Words: {{ text }}", "List: {{ text }}"),
        options=True,
        rationale=True,
    ),
    Family(
        "palindrome",
        _palindrome,
        grid(kind=["numbers", "letters", "word_letters"], labels=["yes_no", "named"]),
        (
            "Is the text a palindrome?",
            "Does the string read the same forwards and backwards?",
            "Check whether this is a palindrome.",
            "Decide if the input is the same when reversed.",
            "Is the sequence symmetric, reading identically in both directions?",
            "Tell whether the string is a palindrome.",
            "Would reversing the string leave it unchanged?",
            "Classify the string as a palindrome or not.",
            "Read it backwards: is it the same?",
            "Determine whether the input is palindromic.",
        ),
        ("{{ text }}", "String: {{ text }}", "Input: {{ text }}"),
        options=True,
    ),
    Family(
        "is_sorted",
        _is_sorted,
        grid(kind=["numbers", "words"], order=["ascending", "descending"], labels=["yes_no", "named"]),
        (
            "Is the list in {{ order }} order?",
            "Check whether the items are sorted in {{ order }} order.",
            "Are these items arranged in {{ order }} order?",
            "Decide if the list is already sorted ({{ order }}).",
            "Tell whether the sequence follows {{ order }} order.",
            "Is the list ordered {{ order }}?",
            "Does the list need no re-sorting to be in {{ order }} order?",
            "Classify the list: sorted in {{ order }} order or not?",
            "Verify that the items are in {{ order }} order.",
            "Determine whether the list is {{ order }}.",
        ),
        ("{{ items }}", "List: {{ items }}", "Items: [{{ items }}]"),
        options=True,
    ),
)
