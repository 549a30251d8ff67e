"""List operations: sorting, picking, filtering, rotating, combining lists of numbers and words."""

from __future__ import annotations

import random
from typing import Any

from flanforge.mixtures.builtin.core import Family, grid
from flanforge.mixtures.builtin.vocab import POOLS, words

RANGES = {"digits": 9, "tens": 99, "hundreds": 999}
ORDERS = {"asc": "ascending order, smallest first", "desc": "descending order, largest first"}
NONE = "none"
"""The placeholder target when nothing in the input qualifies."""


def _nums(rng: random.Random, hi: int, lo_n: int, hi_n: int) -> list[int]:
    return [rng.randint(0, hi) for _ in range(rng.randint(lo_n, hi_n))]


def _items(rng: random.Random, kind: str, n: int) -> list[str]:
    """``n`` distinct numbers or words."""
    if kind == "numbers":
        return [str(x) for x in rng.sample(range(100), n)]
    return rng.sample(POOLS["mixed"], n)


def _sort_numbers(rng: random.Random, hi: int, size: tuple[int, int], order: str, sep: str) -> dict[str, Any]:
    nums = _nums(rng, hi, *size)
    ordered = sorted(nums, reverse=order == "desc")
    return {"numbers": sep.join(map(str, nums)), "order": ORDERS[order], "answer": sep.join(map(str, ordered))}


EXTREMES = {"max": ("largest", -1), "min": ("smallest", 0), "second_max": ("second largest", -2), "second_min": ("second smallest", 1)}


def _list_extreme(rng: random.Random, which: str, hi: int, size: tuple[int, int]) -> dict[str, Any]:
    name, pos = EXTREMES[which]
    nums = rng.sample(range(hi + 1), min(rng.randint(*size), hi + 1))
    ordered = sorted(nums)
    rationale = f"In increasing order the numbers are {', '.join(map(str, ordered))}, so the {name} is {ordered[pos]}."
    return {"numbers": ", ".join(map(str, nums)), "which": name, "answer": str(ordered[pos]), "rationale": rationale}


def _list_sum(rng: random.Random, hi: int, size: tuple[int, int]) -> dict[str, Any]:
    nums = _nums(rng, hi, *size)
    steps, total = [], nums[0]
    for x in nums[1:]:
        steps.append(f"{total} + {x} = {total + x}.")
        total += x
    return {"numbers": ", ".join(map(str, nums)), "answer": str(total), "rationale": " ".join(steps)}


RULES = {
    "even": ("even", lambda x: x % 2 == 0),
    "odd": ("odd", lambda x: x % 2 == 1),
    "gt10": ("greater than 10", lambda x: x > 10),
    "gt50": ("greater than 50", lambda x: x > 50),
    "lt20": ("less than 20", lambda x: x < 20),
    "lt50": ("less than 50", lambda x: x < 50),
    "div3": ("divisible by 3", lambda x: x % 3 == 0),
    "div4": ("divisible by 4", lambda x: x % 4 == 0),
    "div5": ("divisible by 5", lambda x: x % 5 == 0),
    "div10": ("divisible by 10", lambda x: x % 10 == 0),
}


def _filter_numbers(rng: random.Random, rule: str, size: tuple[int, int]) -> dict[str, Any]:
    name, keep = RULES[rule]
    nums = _nums(rng, 99, *size)
    kept = [str(x) for x in nums if keep(x)]
    return {"numbers": ", ".join(map(str, nums)), "rule": name, "answer": ", ".join(kept) or NONE}


POSITIONS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "last": -1, "second_to_last": -2}


def _nth_item(rng: random.Random, position: str, kind: str) -> dict[str, Any]:
    items = _items(rng, kind, rng.randint(6, 8))
    return {"items": ", ".join(items), "position": position.replace("_", " "), "answer": items[POSITIONS[position]]}


def _rotate(rng: random.Random, k: int, direction: str, kind: str) -> dict[str, Any]:
    items = _items(rng, kind, rng.randint(5, 7))
    shift = k if direction == "left" else -k
    rotated = items[shift:] + items[:shift]
    return {"items": ", ".join(items), "k": k, "direction": direction, "answer": ", ".join(rotated)}


WORD_ORDERS = {"asc": "alphabetical order", "desc": "reverse alphabetical order"}


def _sort_words(rng: random.Random, pool: str, order: str) -> dict[str, Any]:
    ws = words(rng, pool, 3, 7)
    return {"text": ", ".join(ws), "order": WORD_ORDERS[order], "answer": ", ".join(sorted(ws, reverse=order == "desc"))}


SET_OPERATIONS = {
    "both": "items that appear in both lists",
    "either": "items that appear in either list",
    "only_first": "items of the first list that are not in the second",
}


def _set_op(rng: random.Random, op: str, kind: str, size: int) -> dict[str, Any]:
    pool = _items(rng, kind, 2 * size)
    a = rng.sample(pool, size)
    b = rng.sample(pool, size)
    result = {
        "both": [x for x in a if x in b],
        "either": a + [x for x in b if x not in a],
        "only_first": [x for x in a if x not in b],
    }[op]
    return {"list_a": ", ".join(a), "list_b": ", ".join(b), "operation": SET_OPERATIONS[op], "answer": ", ".join(result) or NONE}


def _index_of(rng: random.Random, kind: str, base: int, size: tuple[int, int]) -> dict[str, Any]:
    items = _items(rng, kind, rng.randint(*size))
    i = rng.randrange(len(items))
    return {"items": ", ".join(items), "item": items[i], "indexing": f"starting at {base}", "answer": str(i + base)}


def _pairwise_sum(rng: random.Random, n: int, hi: int) -> dict[str, Any]:
    a, b = [rng.randint(0, hi) for _ in range(n)], [rng.randint(0, hi) for _ in range(n)]
    sums = [x + y for x, y in zip(a, b)]
    return {"list_a": ", ".join(map(str, a)), "list_b": ", ".join(map(str, b)), "answer": ", ".join(map(str, sums))}


def _number_range(rng: random.Random, step: int, down: bool) -> dict[str, Any]:
    count = rng.randint(3, 8)
    start = rng.randint(0, 300) + (step * (count - 1) if down else 0)
    seq = [start - i * step if down else start + i * step for i in range(count)]
    return {"start": seq[0], "end": seq[-1], "step": step, "answer": ", ".join(map(str, seq))}


def _running_total(rng: random.Random, hi: int, n: int) -> dict[str, Any]:
    nums = [rng.randint(0, hi) for _ in range(n)]
    totals = [sum(nums[: i + 1]) for i in range(n)]
    return {"numbers": ", ".join(map(str, nums)), "answer": ", ".join(map(str, totals))}


NUMBER_INPUTS = ("{{ numbers }}", "Numbers: {{ numbers }}", "List: [{{ numbers }}]")
ITEM_INPUTS = ("{{ items }}", "List: {{ items }}", "Items: [{{ items }}]")
TWO_LISTS = ("First list: {{ list_a }}\nSecond list: {{ list_b }}", "A: [{{ list_a }}]\nB: [{{ list_b }}]", "List 1: {{ list_a }}\nList 2: {{ list_b }}")

FAMILIES = (
    Family(
        "sort_numbers",
        _sort_numbers,
        grid(hi={**RANGES, "thousands": 9999}, size={"short": (3, 5), "long": (6, 9)}, order=list(ORDERS), sep={"comma": ", ", "space": " "}),
        (
            "Sort the numbers in {{ order }}.",
            "Put these numbers in {{ order }}.",
            "Arrange the list in {{ order }}.",
            "Rewrite the numbers sorted in {{ order }}, using the same separator.",
            "Order the following numbers: {{ order }}.",
            "Return the list sorted in {{ order }}.",
            "What is this list when sorted in {{ order }}?",
            "Sort the sequence below in {{ order }}. Keep repeated numbers.",
            "Reorder the numbers so that they are in {{ order }}.",
            "Give the numbers in {{ order }}.",
        ),
        NUMBER_INPUTS,
    ),
    Family(
        "list_extreme",
        _list_extreme,
        grid(which=list(EXTREMES), hi=RANGES, size={"short": (3, 5), "long": (6, 9)}),
        (
            "Which number in the list is the {{ which }}?",
            "Find the {{ which }} number.",
            "Give the {{ which }} value in the list.",
            "Pick out the {{ which }} of these numbers.",
            "What is the {{ which }} number below?",
            "Report the {{ which }} element of the list.",
            "Look through the numbers and return the {{ which }} one.",
            "Identify the {{ which }} number in this list.",
            "Among these numbers, which is the {{ which }}?",
            "Select the {{ which }} number from the following.",
        ),
        NUMBER_INPUTS,
        rationale=True,
    ),
    Family(
        "list_sum",
        _list_sum,
        grid(hi={"small": 9, "twenty": 20, "fifty": 50, "large": 99}, size={"two": (2, 3), "four": (4, 5), "six": (6, 8)}),
        (
            "Add up the numbers.",
            "What is the sum of these numbers?",
            "Compute the total of the list.",
            "Find the sum of all the numbers below.",
            "Give the total when all of these numbers are added together.",
            "Sum the list.",
            "Calculate the result of adding every number in the list.",
            "What do the numbers add up to?",
            "Return the sum of the sequence.",
            "Total these numbers.",
        ),
        NUMBER_INPUTS,
        rationale=True,
    ),
    Family(
        "filter_numbers",
        _filter_numbers,
        grid(rule=list(RULES), size={"short": (3, 6), "long": (7, 10)}),
        (
            'Keep only the numbers that are {{ rule }}. Answer "none" if there are none.',
            'Filter the list: which numbers are {{ rule }}? Write "none" if no number qualifies.',
            'List every number that is {{ rule }}, in the original order (or "none").',
            "Remove the numbers that are not {{ rule }}.",
            "Which of these numbers are {{ rule }}?",
            "Select the elements that are {{ rule }}, keeping their order.",
            "Return the numbers from the list that are {{ rule }}; if there are none, say none.",
            "Write down only the numbers that are {{ rule }}.",
            "Go through the list and keep each number that is {{ rule }}.",
            "Find all numbers in the list that are {{ rule }}.",
        ),
        NUMBER_INPUTS,
    ),
    Family(
        "nth_item",
        _nth_item,
        grid(position=list(POSITIONS), kind=["numbers", "words"]),
        (
            "What is the {{ position }} item in the list?",
            "Give the {{ position }} element.",
            "Which entry of the list is the {{ position }} one?",
            "Return the list's {{ position }} item.",
            "Pick the {{ position }} element of the list.",
            "Read the list and report its {{ position }} entry.",
            "Name the {{ position }} item in this list.",
            "Find the element in the {{ position }} position.",
            "What sits in the {{ position }} place of the list?",
            "Output the {{ position }} item of the following list.",
        ),
        ITEM_INPUTS,
    ),
    Family(
        "rotate_list",
        _rotate,
        grid(k=[1, 2, 3], direction=["left", "right"], kind=["numbers", "words"]),
        (
            "Rotate the list to the {{ direction }} by {{ k }}.",
            "Shift every item {{ k }} positions to the {{ direction }}, wrapping around the ends.",
            "Cyclically rotate the items {{ direction }} by {{ k }}.",
            "Move the items {{ k }} places {{ direction }}; items that fall off one end come back at the other.",
            "Perform a {{ direction }} rotation of the list by {{ k }}.",
            "Rotate this sequence {{ k }} step(s) to the {{ direction }}.",
            "Apply a circular shift of {{ k }} to the {{ direction }}.",
            "What is the list after rotating it {{ direction }} by {{ k }}?",
            "Wrap the list around: shift {{ direction }} by {{ k }} positions.",
            "Give the list rotated {{ k }} place(s) to the {{ direction }}.",
        ),
        ITEM_INPUTS,
    ),
    Family(
        "sort_words",
        _sort_words,
        grid(pool=list(POOLS), order=list(WORD_ORDERS)),
        (
            "Sort the words in {{ order }}.",
            "Put these words in {{ order }}.",
            "Arrange the words below in {{ order }}.",
            "Rewrite the list with the words in {{ order }}.",
            "Order the words by {{ order }}.",
            "What is this list when sorted in {{ order }}?",
            "Sort the following list of words ({{ order }}).",
            "Reorder the words so they follow {{ order }}.",
            "Return the words sorted in {{ order }}, separated by commas.",
            "List the words in {{ order }}.",
        ),
        ("{{ text }}", "Words: {{ text }}", "List: [{{ text }}]"),
    ),
    Family(
        "set_operation",
        _set_op,
        grid(op=list(SET_OPERATIONS), kind=["numbers", "words"], size={"four": 4, "six": 6}),
        (
            "List the {{ operation }}.",
            "Give the {{ operation }}, in order of appearance.",
            "Which are the {{ operation }}?",
            'Find the {{ operation }}. Write "none" if there are none.',
            "Write out the {{ operation }}, separated by commas.",
            "Compare the two lists and return the {{ operation }}.",
            "Determine the {{ operation }}.",
            "Collect the {{ operation }}; keep the order in which they first appear.",
            "From the two lists, output the {{ operation }}.",
            "What are the {{ operation }}?",
        ),
        TWO_LISTS,
    ),
    Family(
        "index_of",
        _index_of,
        grid(kind=["numbers", "words"], base=[0, 1], size={"short": (4, 6), "long": (7, 10)}),
        (
            "At what position is the item in the list, {{ indexing }}?",
            "Give the index of the item ({{ indexing }}).",
            "Where does the item appear in the list? Answer with its position, {{ indexing }}.",
            "Find the position of the item, {{ indexing }}.",
            "What is the index of the given item? Count positions {{ indexing }}.",
            "Report the position of the item in the list (positions {{ indexing }}).",
            "Which position holds the item? Positions are numbered {{ indexing }}.",
            "Locate the item and give its index, {{ indexing }}.",
            "Return the index where the item occurs, {{ indexing }}.",
            "How far into the list is the item? Give its position, {{ indexing }}.",
        ),
        ("List: {{ items }}\nItem: {{ item }}", "[{{ items }}]\nFind: {{ item }}", "Items: {{ items }}\nLook for: {{ item }}"),
    ),
    Family(
        "pairwise_sum",
        _pairwise_sum,
        grid(n=[2, 3, 4, 5], hi={"small": 9, "large": 99}),
        (
            "Add the two lists element by element.",
            "Sum the numbers at matching positions in the two lists.",
            "Give the element-wise sum of the lists.",
            "For each position, add the first list's number to the second list's number.",
            "Combine the lists by adding corresponding elements.",
            "What is the position-by-position sum of these lists?",
            "Produce a list whose items are the sums of the paired numbers.",
            "Add each number in the first list to the number in the same place in the second.",
            "Compute the pairwise sums of the two lists.",
            "Return the list of sums of corresponding elements.",
        ),
        TWO_LISTS,
    ),
    Family(
        "number_range",
        _number_range,
        grid(step=[1, 2, 3, 5, 10], down={"up": False, "down": True}),
        (
            "Count from the first number to the second in steps of {{ step }}.",
            "List the numbers from the start to the end, going in steps of {{ step }}.",
            "Write the sequence that runs from the first number to the second and changes by {{ step }} each time.",
            "Give the numbers from the start to the end (inclusive) spaced {{ step }} apart.",
            "Enumerate the range with a step of {{ step }}.",
            "Starting from the first number, step by {{ step }} until you reach the second. Write all the numbers.",
            "What numbers do you say counting by {{ step }}s over this range?",
            "Produce the list with a spacing of {{ step }} between the two numbers given, both included.",
            "Fill in the range, stepping by {{ step }}.",
            "Write out the arithmetic sequence between the two numbers with difference {{ step }}.",
        ),
        ("{{ start }} to {{ end }}", "From {{ start }} to {{ end }}", "Start: {{ start }}\nEnd: {{ end }}"),
    ),
    Family(
        "running_total",
        _running_total,
        grid(hi={"small": 9, "medium": 20, "large": 50}, n=[3, 5, 7]),
        (
            "Give the running total of the list.",
            "Write the cumulative sums of the numbers.",
            "Replace each number by the sum of itself and everything before it.",
            "Compute the prefix sums.",
            "What are the partial sums of this sequence, from the first number on?",
            "Keep a running sum and write it after each number.",
            "List the totals you get as you add the numbers one at a time.",
            "Return the cumulative total at every position.",
            "Accumulate the list: each output is the sum so far.",
            "Produce the sequence of running sums.",
        ),
        NUMBER_INPUTS,
    ),
)
