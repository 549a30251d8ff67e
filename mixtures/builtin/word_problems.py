"""One-step and two-step word problems with a worked rationale (the arithmetic cluster's ``word_problem`` family)."""

from __future__ import annotations

import random
from typing import Any

from flanforge.mixtures.builtin.vocab import CATEGORIES, NAMES

ITEMS = ("pencils", "stickers", "marbles", "stamps", "cards", "books", "shells", "coins", "buttons", "apples")


def _story(rng: random.Random, kind: str, hi: int) -> tuple[str, int, str]:
    name, other = rng.sample(NAMES, 2)
    items = rng.choice(ITEMS)
    a, b = rng.randint(2, hi), rng.randint(2, hi)
    if kind == "buy":
        return f"{name} buys {a} {items} at {b} dollars each. How many dollars does {name} spend?", a * b, f"{a} * {b} = {a * b}."
    if kind == "give":
        a += b
        return (f"{name} has {a} {items} and gives {b} of them to {other}. How many {items} does {name} have left?",
                a - b, f"{a} - {b} = {a - b}.")
    if kind == "collect":
        return (f"{name} collects {a} {items} on Monday and {b} more on Tuesday. How many {items} does {name} have now?",
                a + b, f"{a} + {b} = {a + b}.")
    if kind == "share":
        return (f"{name} shares {a * b} {items} equally among {b} friends. How many {items} does each friend get?",
                a, f"{a * b} / {b} = {a}.")
    if kind == "age":
        c = rng.randint(1, 20)
        a += b
        return (f"{name} is {a} years old and {other} is {b} years younger. How old will {other} be in {c} years?",
                a - b + c, f"{other} is {a} - {b} = {a - b} years old now, and {a - b} + {c} = {a - b + c}.")
    if kind == "speed":
        vehicle = rng.choice(CATEGORIES["vehicle"])
        return (f"A {vehicle} travels at {a} kilometres per hour for {b} hours. How many kilometres does it travel?",
                a * b, f"{a} * {b} = {a * b}.")
    if kind == "rows":
        empty = rng.randint(0, a * b)
        return (f"A hall has {a} rows of {b} chairs, and {empty} chairs are empty. How many chairs are taken?",
                a * b - empty, f"There are {a} * {b} = {a * b} chairs, and {a * b} - {empty} = {a * b - empty}.")
    paid = 10 ** len(str(a * b)) if a * b > 10 else 20
    return (f"{name} buys {a} {items} at {b} dollars each and pays with {paid} dollars. How much change does {name} get?",
            paid - a * b, f"The {items} cost {a} * {b} = {a * b} dollars, and {paid} - {a * b} = {paid - a * b}.")


STORIES = ("buy", "give", "collect", "share", "age", "speed", "rows", "change")


def word_problem(rng: random.Random, kind: str, hi: int) -> dict[str, Any]:
    question, answer, rationale = _story(rng, kind, hi)
    return {"question": question, "answer": str(answer), "rationale": rationale}
