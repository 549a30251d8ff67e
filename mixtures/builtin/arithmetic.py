"""Arithmetic with worked rationales: sums, differences, products, division, word problems, time and dates."""

from __future__ import annotations

import random
from typing import Any

from flanforge.mixtures.builtin.core import Family, NUMBER_INPUTS, grid
from flanforge.mixtures.builtin.vocab import WEEKDAYS
from flanforge.mixtures.builtin.word_problems import STORIES, word_problem

def operand(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def evaluate(nums: list[int], ops: list[str]) -> tuple[int, list[str]]:
    """Value of ``nums[0] ops[0] nums[1] ...`` (``*`` first, then ``+``/``-`` left to right) and each step written out."""
    nums, ops, steps = list(nums), list(ops), []
    while "*" in ops:
        i = ops.index("*")
        value = nums[i] * nums[i + 1]
        steps.append(f"{nums[i]} * {nums[i + 1]} = {value}.")
        nums[i : i + 2] = [value]
        del ops[i]
    total = nums[0]
    for op, x in zip(ops, nums[1:]):
        new = total + x if op == "+" else total - x
        steps.append(f"{total} {op} {x} = {new}.")
        total = new
    return total, steps


def _record(problem: str, value: int, steps: list[str]) -> dict[str, Any]:
    return {"problem": problem, "answer": str(value), "rationale": " ".join(steps)}


def _add(rng: random.Random, digits: int, terms: int) -> dict[str, Any]:
    nums = [operand(rng, digits) for _ in range(terms)]
    return _record(" + ".join(map(str, nums)), *evaluate(nums, ["+"] * (terms - 1)))


def _subtract(rng: random.Random, digits: int, terms: int, negative: bool) -> dict[str, Any]:
    nums = [operand(rng, digits) for _ in range(terms)]
    if not negative:
        nums[0] += sum(nums[1:])
    return _record(" - ".join(map(str, nums)), *evaluate(nums, ["-"] * (terms - 1)))


def _multiply(rng: random.Random, shape: tuple[int, int], symbol: str) -> dict[str, Any]:
    a, b = operand(rng, shape[0]), operand(rng, shape[1])
    parts = [int(d) * 10**i for i, d in enumerate(reversed(str(b))) if d != "0"][::-1]
    if len(parts) > 1:
        split = " + ".join(f"{a} * {p}" for p in parts)
        rationale = f"{a} * {b} = {split} = {' + '.join(str(a * p) for p in parts)} = {a * b}."
    else:
        rationale = f"{a} * {b} = {a * b}."
    return {"problem": f"{a} {symbol} {b}", "answer": str(a * b), "rationale": rationale}


def _divide(rng: random.Random, divisor: int, part: str) -> dict[str, Any]:
    n = rng.randint(divisor, divisor * 200)
    q, r = divmod(n, divisor)
    rationale = f"{divisor} * {q} = {divisor * q} and {n} - {divisor * q} = {r}, so the quotient is {q} and the remainder is {r}."
    return {"problem": f"{n} divided by {divisor}", "part": part, "answer": str(q if part == "quotient" else r), "rationale": rationale}


def _compare(rng: random.Random, digits: int, which: str) -> dict[str, Any]:
    a, b = rng.sample(range(10 ** (digits - 1), 10**digits), 2)
    pick = max(a, b) if which == "larger" else min(a, b)
    relation = "greater" if a > b else "less"
    return {"a": a, "b": b, "which": which, "options": [str(a), str(b)], "answer": str(pick),
            "rationale": f"{a} is {relation} than {b}, so the {which} number is {pick}."}


def _expression(rng: random.Random, style: str, n: int) -> dict[str, Any]:
    nums = [rng.randint(1, 12) for _ in range(n)]
    signs = "+-" if style == "add_sub" else "+-*"
    ops = [rng.choice(signs) for _ in range(n - 1)]
    if style != "paren":
        text = " ".join(f"{x} {op}" for x, op in zip(nums, ops)) + f" {nums[-1]}"
        return _record(text, *evaluate(nums, ops))
    inner, inner_steps = evaluate(nums[:2], ops[:1])
    outer, outer_steps = evaluate([inner, *nums[2:]], ops[1:])
    text = f"({nums[0]} {ops[0]} {nums[1]}) " + " ".join(f"{op} {x}" for op, x in zip(ops[1:], nums[2:]))
    return _record(text, outer, inner_steps + outer_steps)


def _percent(rng: random.Random, percent: int, hi: int) -> dict[str, Any]:
    base = 20 * rng.randint(1, hi)
    value = base * percent // 100
    return {"problem": f"{percent}% of {base}", "answer": str(value),
            "rationale": f"{percent}% of {base} is {base} * {percent} / 100 = {value}."}


def _clock(t: int, hours24: bool) -> str:
    h, m = divmod(t % 1440, 60)
    return f"{h:02d}:{m:02d}" if hours24 else f"{(h - 1) % 12 + 1}:{m:02d} {'AM' if h < 12 else 'PM'}"


def _clock_add(rng: random.Random, span: int, hours24: bool, later: bool) -> dict[str, Any]:
    start, delta = rng.randrange(1440), rng.randint(1, span)
    end = start + delta if later else start - delta
    h, m = divmod(delta, 60)
    rationale = f"{delta} minutes is {h} hours and {m} minutes; {_clock(start, hours24)} {'plus' if later else 'minus'} that is {_clock(end, hours24)}."
    return {"time": _clock(start, hours24), "minutes": delta, "direction": "later" if later else "earlier",
            "answer": _clock(end, hours24), "rationale": rationale}


def _weekday(rng: random.Random, later: bool, span: int) -> dict[str, Any]:
    today, n = rng.randrange(7), rng.randint(1, span)
    day = WEEKDAYS[(today + n if later else today - n) % 7]
    direction = "after" if later else "before"
    rationale = f"{n} = 7 * {n // 7} + {n % 7}, and {n % 7} days {direction} {WEEKDAYS[today]} is {day}."
    return {"today": WEEKDAYS[today], "days": n, "direction": direction, "answer": day, "rationale": rationale}


ROUNDINGS = {"tens": ("ten", -1), "hundreds": ("hundred", -2), "thousands": ("thousand", -3),
             "one_decimal": ("tenth", 1), "two_decimals": ("hundredth", 2)}


def _round(rng: random.Random, unit: str, large: bool) -> dict[str, Any]:
    """Round half up; ``k`` is the number itself, or for decimals in units of one digit more than kept."""
    name, places = ROUNDINGS[unit]
    k = rng.randint(0, 10**7 if large else 10**4)
    if places < 0:
        m = 10**-places
        return {"number": str(k), "unit": name, "answer": str((k + m // 2) // m * m)}
    kept = (k + 5) // 10
    return {"number": f"{k / 10 ** (places + 1):.{places + 1}f}", "unit": name, "answer": f"{kept / 10**places:.{places}f}"}


def _digit_sum(rng: random.Random, digits: int) -> dict[str, Any]:
    n = operand(rng, digits)
    total = sum(map(int, str(n)))
    return {"number": n, "answer": str(total), "rationale": f"{' + '.join(str(n))} = {total}."}


def _power(rng: random.Random, p: int, hi: int) -> dict[str, Any]:
    x = rng.randint(2, hi)
    return {"number": x, "power": "square" if p == 2 else "cube", "answer": str(x**p),
            "rationale": f"{' * '.join([str(x)] * p)} = {x**p}."}


PROBLEM_INPUTS = ("{{ problem }}", "{{ problem }} = ?", "Problem: {{ problem }}", "What is {{ problem }}?")

FAMILIES = (
    Family(
        "add",
        _add,
        grid(digits=[1, 2, 3, 4], terms=[2, 3, 4]),
        (
            "Calculate the result.",
            "What is the value of this sum?",
            "Add the numbers.",
            "Work out the total.",
            "Evaluate the addition.",
            "Compute this sum.",
            "Solve the addition problem.",
            "Find the sum.",
            "Give the answer to this addition problem.",
            "What does this add up to?",
        ),
        PROBLEM_INPUTS,
        inverted=(
            ("Write an addition problem whose answer is the number given.", "{{ answer }}", "{{ problem }}"),
            ("Make up a sum that equals this number.", "Target: {{ answer }}", "{{ problem }}"),
        ),
        rationale=True,
    ),
    Family(
        "subtract",
        _subtract,
        grid(digits=[1, 2, 3, 4], terms=[2, 3], negative={"natural": False, "signed": True}),
        (
            "Calculate the difference.",
            "What is the result of this subtraction?",
            "Subtract the numbers from left to right.",
            "Work out the value.",
            "Evaluate the subtraction.",
            "Compute the difference shown.",
            "Solve this subtraction problem.",
            "Find the result; it may be negative.",
            "Give the answer to the subtraction.",
            "How much is left after the subtraction?",
        ),
        PROBLEM_INPUTS,
        rationale=True,
    ),
    Family(
        "multiply",
        _multiply,
        grid(shape={"1x1": (1, 1), "2x1": (2, 1), "2x2": (2, 2), "3x1": (3, 1), "3x2": (3, 2), "4x1": (4, 1)},
             symbol={"star": "*", "cross": "x", "times": "times"}),
        (
            "Multiply the numbers.",
            "What is the product?",
            "Calculate the result of the multiplication.",
            "Work out this product.",
            "Evaluate the multiplication.",
            "Compute the product of the two numbers.",
            "Solve the multiplication problem.",
            "Find the result of multiplying these numbers.",
            "Give the answer to this multiplication.",
            "How much is this product?",
        ),
        PROBLEM_INPUTS,
        rationale=True,
    ),
    Family(
        "divide",
        _divide,
        grid(divisor=range(2, 20), part=["quotient", "remainder"]),
        (
            "Give the {{ part }} of the division.",
            "What is the {{ part }}?",
            "Divide and report the {{ part }}.",
            "Perform the whole-number division and write the {{ part }}.",
            "Find the {{ part }} when dividing.",
            "Compute the {{ part }} of this integer division.",
            "Work out the division; answer with the {{ part }} only.",
            "What {{ part }} does this division leave?",
            "Calculate the integer division and give its {{ part }}.",
            "Do the long division and state the {{ part }}.",
        ),
        PROBLEM_INPUTS,
        rationale=True,
    ),
    Family(
        "word_problem",
        word_problem,
        grid(kind=STORIES, hi={"small": 9, "large": 60}),
        (
            "Solve the word problem.",
            "Answer the question with a number.",
            "Read the problem and work out the answer.",
            "Solve this math story problem.",
            "What is the answer to this question?",
            "Work through the problem and give the final number.",
            "Figure out the answer to the following problem.",
            "Use arithmetic to answer the question.",
            "Calculate the answer to this word problem.",
            "Find the number the question asks for.",
        ),
        ("{{ question }}", "Question: {{ question }}", "Problem: {{ question }}"),
        rationale=True,
    ),
    Family(
        "compare_numbers",
        _compare,
        grid(digits=[2, 3, 4, 6], which=["larger", "smaller"]),
        (
            "Which number is {{ which }}?",
            "Pick the {{ which }} of the two numbers.",
            "Compare the numbers and give the {{ which }} one.",
            "Of these two numbers, which one is {{ which }}?",
            "Return the {{ which }} number.",
            "Tell me which number is {{ which }}.",
            "Identify the {{ which }} value.",
            "Choose the {{ which }} number of the pair.",
            "Between the two numbers, write down the {{ which }}.",
            "Which of the numbers is the {{ which }} one?",
        ),
        ("{{ a }} and {{ b }}", "Numbers: {{ a }}, {{ b }}", "A = {{ a }}, B = {{ b }}"),
        options=True,
        rationale=True,
    ),
    Family(
        "evaluate_expression",
        _expression,
        grid(style=["add_sub", "mixed", "paren"], n=[3, 4]),
        (
            "Evaluate the expression.",
            "What is the value of the expression? Multiplication comes before addition and subtraction.",
            "Compute the expression, respecting the order of operations.",
            "Simplify the expression to a single number.",
            "Work out the value of this arithmetic expression.",
            "Calculate the result; brackets first, then multiplication, then addition and subtraction.",
            "Find the value of the following expression.",
            "Solve the expression.",
            "Give the number this expression equals.",
            "What does the expression evaluate to?",
        ),
        PROBLEM_INPUTS,
        rationale=True,
    ),
    Family(
        "percent_of",
        _percent,
        grid(percent=[10, 20, 25, 50, 75], hi={"small": 200, "large": 2000}),
        (
            "Compute the percentage.",
            "What is the given percent of the number?",
            "Work out the percentage of the amount.",
            "Calculate the value.",
            "How much is this percentage?",
            "Find the part of the number that the percentage describes.",
            "Evaluate the percentage expression.",
            "Give the result of taking this percent of the number.",
            "Determine the amount.",
            "Solve the percentage problem.",
        ),
        PROBLEM_INPUTS,
        rationale=True,
    ),
    Family(
        "clock_arithmetic",
        _clock_add,
        grid(span={"minutes": 59, "hours": 300}, hours24={"24h": True, "12h": False}, later={"later": True, "earlier": False}),
        (
            "What time is it the given number of minutes {{ direction }}?",
            "Give the clock time that many minutes {{ direction }}.",
            "Work out the time after moving the clock {{ direction }} by the minutes given.",
            "If the clock shows the time below, what will it show the given minutes {{ direction }}?",
            "Compute the time that is the given number of minutes {{ direction }}.",
            "Find the new time, {{ direction }} by the stated minutes.",
            "Shift the time {{ direction }} by the number of minutes shown.",
            "What does the clock read that many minutes {{ direction }}?",
            "Calculate the time reached by going {{ direction }} the given minutes.",
            "Tell the time the given number of minutes {{ direction }}, in the same format.",
        ),
        ("Time: {{ time }}\nMinutes: {{ minutes }}", "{{ time }}, {{ minutes }} minutes", "It is {{ time }}. Minutes: {{ minutes }}"),
        rationale=True,
    ),
    Family(
        "weekday_arithmetic",
        _weekday,
        grid(later={"after": True, "before": False}, span={"weeks": 20, "months": 60, "year": 400}),
        (
            "Which day of the week is it the given number of days {{ direction }} today?",
            "Name the weekday that many days {{ direction }} today.",
            "Work out the day of the week the given days {{ direction }} today.",
            "What day is it, counting the days {{ direction }} today?",
            "Find the weekday the stated number of days {{ direction }} today.",
            "Give the day of the week that falls that many days {{ direction }} today.",
            "Count the days {{ direction }} today and say which weekday you land on.",
            "Determine the weekday the given number of days {{ direction }} today.",
            "Which weekday is it that many days {{ direction }} today?",
            "Tell the day of the week the given days {{ direction }} today.",
        ),
        ("Today: {{ today }}\nDays: {{ days }}", "Today is {{ today }}; days: {{ days }}", "{{ today }}, {{ days }} days"),
        rationale=True,
    ),
    Family(
        "round_number",
        _round,
        grid(unit=list(ROUNDINGS), large={"small": False, "large": True}),
        (
            "Round the number to the nearest {{ unit }}.",
            "What is the number rounded to the nearest {{ unit }}?",
            "Give the number to the nearest {{ unit }}; round halves up.",
            "Round off to the nearest {{ unit }}.",
            "Approximate the number to the nearest {{ unit }}.",
            "Write the number rounded to the closest {{ unit }}.",
            "Round the following value to the nearest {{ unit }}.",
            "What do you get when rounding to the nearest {{ unit }}?",
            "Express the number to the nearest {{ unit }}.",
            "Apply rounding to the nearest {{ unit }}.",
        ),
        ("{{ number }}", "Number: {{ number }}", "Value: {{ number }}"),
    ),
    Family(
        "digit_sum",
        _digit_sum,
        grid(digits=[3, 4, 5, 6, 7, 8]),
        (
            "Add up the digits of the number.",
            "What is the sum of the digits?",
            "Compute the digit sum.",
            "Find the total of all the digits in the number.",
            "Sum the individual digits.",
            "Give the sum of the number's digits.",
            "Work out what the digits add up to.",
            "Calculate the digit sum of the following number.",
            "Add each digit of the number together.",
            "Return the sum of the digits.",
        ),
        NUMBER_INPUTS,
        rationale=True,
    ),
    Family(
        "power",
        _power,
        grid(p={"square": 2, "cube": 3}, hi={"small": 60, "large": 300}),
        (
            "Compute the {{ power }} of the number.",
            "What is the {{ power }} of this number?",
            "Give the number's {{ power }}.",
            "Calculate the {{ power }}.",
            "Find the {{ power }} of the following.",
            "Work out the {{ power }} of the number.",
            "Raise the number to make its {{ power }}.",
            "Return the {{ power }} of the given number.",
            "Evaluate the {{ power }} of this value.",
            "Determine the {{ power }} of the number.",
        ),
        NUMBER_INPUTS,
        rationale=True,
    ),
)
