"""Logic: boolean expressions, orderings, syllogisms, membership, sequences and rules."""

from __future__ import annotations

import random
import string
from typing import Any

from flanforge.mixtures.builtin.core import Family, NUMBER_INPUTS, grid
from flanforge.mixtures.builtin.vocab import CATEGORIES, NAMES, POOLS

TRUTH_NAMES = {"title": ("True", "False"), "lower": ("true", "false"), "letters": ("T", "F"), "bits": ("1", "0")}
CONNECTIVES = {"words": ("and", "or", "not "), "symbols": ("&", "|", "!")}


def _bracket(text: str) -> str:
    return f"({text})" if " " in text else text


def _bool_expr(rng: random.Random, depth: int, names: tuple[str, str], ops: tuple[str, str, str]) -> tuple[str, bool, list[str]]:
    """``(text, value, steps)`` of a random expression ``depth`` connectives deep."""
    if depth == 0:
        value = rng.random() < 0.5
        return names[not value], value, []
    conj, disj, neg = ops
    if rng.random() < 0.25:
        text, value, steps = _bool_expr(rng, depth - 1, names, ops)
        return f"{neg}{_bracket(text)}", not value, [*steps, f"{neg}{names[not value]} = {names[value]}"]
    op = rng.choice((conj, disj))
    lt, lv, ls = _bool_expr(rng, depth - 1, names, ops)
    rt, rv, rs = _bool_expr(rng, rng.randint(0, depth - 1), names, ops)
    value = (lv and rv) if op == conj else (lv or rv)
    step = f"{names[not lv]} {op} {names[not rv]} = {names[not value]}"
    return f"{_bracket(lt)} {op} {_bracket(rt)}", value, [*ls, *rs, step]


def _boolean(rng: random.Random, values: str, ops: str, depth: int) -> dict[str, Any]:
    names = TRUTH_NAMES[values]
    text, value, steps = _bool_expr(rng, depth, names, CONNECTIVES[ops])
    return {"expression": text, "options": list(names), "answer": names[not value], "rationale": " ".join(s + "." for s in steps)}


RELATIONS = {
    "tall": ("taller than", "tallest", "shortest"),
    "old": ("older than", "oldest", "youngest"),
    "fast": ("faster than", "fastest", "slowest"),
    "heavy": ("heavier than", "heaviest", "lightest"),
    "rich": ("richer than", "richest", "poorest"),
    "strong": ("stronger than", "strongest", "weakest"),
    "loud": ("louder than", "loudest", "quietest"),
    "happy": ("happier than", "happiest", "saddest"),
    "busy": ("busier than", "busiest", "least busy"),
    "brave": ("braver than", "bravest", "least brave"),
}


def _ordering(rng: random.Random, relation: str, n: int, most: bool) -> dict[str, Any]:
    comparative, top, bottom = RELATIONS[relation]
    people = rng.sample(NAMES, n)
    facts = [f"{a} is {comparative} {b}." for a, b in zip(people, people[1:])]
    rng.shuffle(facts)
    answer = people[0] if most else people[-1]
    superlative = top if most else bottom
    rationale = f"Chaining the statements: {' > '.join(people)} ({comparative.split()[0]} first). The {superlative} is {answer}."
    return {"facts": " ".join(facts), "superlative": superlative, "options": sorted(people), "answer": answer, "rationale": rationale}


NONSENSE = ("wugs", "blickets", "daxes", "feps", "zorbs", "glims", "toves", "snarks", "quibs", "morps", "flurbs", "grebs")
VERDICTS = {"yes_no": ("yes", "no", "unknown"), "true_false": ("true", "false", "unknown"), "follows": ("follows", "contradicts", "cannot tell")}
JOBS = tuple(w + "s" for w in CATEGORIES["job"])


def _syllogism(rng: random.Random, labels: str, chain: bool, terms: str) -> dict[str, Any]:
    a, b, c = rng.sample(NONSENSE if terms == "nonsense" else JOBS, 3)
    x = rng.choice(NAMES)
    form = rng.choice(("yes", "no", "unknown"))
    mid, last = (b, c) if chain else (a, b)
    link = [f"All {a} are {b}."] if chain else []
    if form == "yes":
        premises = [*link, f"All {mid} are {last}.", f"{x} is one of the {a}."]
        why = f"{x} is one of the {a}, so {x} is one of the {last}."
    elif form == "no":
        premises = [*link, f"No {mid} are {last}.", f"{x} is one of the {a}."]
        why = f"{x} is one of the {mid}, and none of the {mid} are {last}."
    else:
        premises = [*link, f"All {mid} are {last}.", f"{x} is one of the {last}."]
        why = f"Being one of the {last} does not make {x} one of the {mid}; the statements do not settle it."
    question = f"Is {x} one of the {last}?" if form != "unknown" else f"Is {x} one of the {mid}?"
    verdicts = VERDICTS[labels]
    answer = verdicts[("yes", "no", "unknown").index(form)]
    return {"premises": " ".join(premises), "question": question, "labels": ", ".join(verdicts), "options": list(verdicts),
            "answer": answer, "rationale": why}


YES_NO = {"yes_no": ("yes", "no"), "true_false": ("true", "false")}


def _membership(rng: random.Random, kind: str, size: tuple[int, int], style: str) -> dict[str, Any]:
    pool = [str(x) for x in range(100)] if kind == "numbers" else list(POOLS["mixed"])
    items = rng.sample(pool, rng.randint(*size))
    present = rng.random() < 0.5
    item = rng.choice(items) if present else rng.choice([p for p in pool if p not in items])
    yes, no = YES_NO[style]
    return {"items": ", ".join(items), "item": item, "options": [yes, no], "answer": yes if present else no}


def _sequence(rng: random.Random, kind: str, shown: int) -> dict[str, Any]:
    a = rng.randint(1, 100)
    if kind in ("step_small", "step_large", "descending"):
        d = rng.randint(1, 5) if kind == "step_small" else rng.randint(6, 25)
        d, a = (-d, a + d * (shown + 1)) if kind == "descending" else (d, a)
        seq = [a + i * d for i in range(shown + 1)]
        rule = f"Each term is {abs(d)} {'more' if d > 0 else 'less'} than the one before"
    elif kind in ("double", "triple"):
        r = 2 if kind == "double" else 3
        a = rng.randint(1, 60)
        seq = [a * r**i for i in range(shown + 1)]
        rule = f"Each term is {r} times the one before"
    elif kind == "squares":
        seq = [(a + i) ** 2 for i in range(shown + 1)]
        rule = f"The terms are the squares {a}*{a}, {a + 1}*{a + 1}, and so on"
    elif kind == "alternate":
        p, q = rng.sample(range(1, 10), 2)
        seq = [a]
        for i in range(shown):
            seq.append(seq[-1] + (p if i % 2 == 0 else q))
        rule = f"The steps alternate between adding {p} and adding {q}"
    else:
        seq = [a, rng.randint(1, 20)]
        while len(seq) < shown + 1:
            seq.append(seq[-1] + seq[-2])
        rule = "Each term is the sum of the two before it"
    *given, nxt = seq
    return {"sequence": ", ".join(map(str, given)), "answer": str(nxt), "rationale": f"{rule}, so the next term is {nxt}."}


SEQUENCES = ("step_small", "step_large", "descending", "double", "triple", "squares", "alternate", "fibonacci")
LABEL_PAIRS = {"high_low": ("high", "low"), "yes_no": ("yes", "no"), "big_small": ("big", "small"), "above_below": ("above", "below")}


def _threshold(rng: random.Random, threshold: int, labels: str) -> dict[str, Any]:
    n = rng.randint(0, 2 * threshold)
    above, below = LABEL_PAIRS[labels]
    relation = "greater than" if n > threshold else "not greater than"
    return {"number": n, "threshold": threshold, "above": above, "below": below, "options": [above, below],
            "answer": above if n > threshold else below, "rationale": f"{n} is {relation} {threshold}."}


CATEGORY_GROUPS = {
    "living": ("animal", "fruit", "vegetable", "job"),
    "objects": ("tool", "furniture", "vehicle", "instrument", "clothing"),
    "other": ("color", "metal", "country", "sport"),
    "all": tuple(CATEGORIES),
}
SAME_LABELS = {"yes_no": ("yes", "no"), "same_different": ("same", "different"), "true_false": ("true", "false")}


def _same_category(rng: random.Random, group: str, labels: str) -> dict[str, Any]:
    first = rng.choice(CATEGORY_GROUPS[group])
    second = first if rng.random() < 0.5 else rng.choice([c for c in CATEGORY_GROUPS[group] if c != first])
    a, b = (rng.sample(CATEGORIES[first], 2) if first == second else [rng.choice(CATEGORIES[first]), rng.choice(CATEGORIES[second])])
    same, different = SAME_LABELS[labels]
    return {"word_a": a, "word_b": b, "options": [same, different], "answer": same if first == second else different,
            "rationale": f"{a} belongs to the category {first} and {b} to the category {second}."}


SYMBOLS = {"letters": tuple(string.ascii_uppercase), "digits": tuple(string.digits), "colors": CATEGORIES["color"],
           "animals": CATEGORIES["animal"], "shapes": ("circle", "square", "triangle", "star", "heart", "diamond", "hexagon", "oval")}


def _pattern(rng: random.Random, period: int, symbols: str) -> dict[str, Any]:
    motif = rng.sample(SYMBOLS[symbols], period)
    length = 2 * period + rng.randrange(period)
    seq = [motif[i % period] for i in range(length)]
    return {"sequence": ", ".join(seq), "answer": motif[length % period]}


FAMILIES = (
    Family(
        "boolean_expression",
        _boolean,
        grid(values=list(TRUTH_NAMES), ops=list(CONNECTIVES), depth=[2, 3, 4]),
        (
            "Evaluate the boolean expression.",
            "Is the logical expression true or false?",
            "Work out the truth value of the expression.",
            "Compute the result of this logic formula.",
            "What does the boolean expression evaluate to?",
            "Determine whether the expression holds.",
            "Simplify the expression to a single truth value.",
            "Give the value of the following logical expression.",
            "Evaluate the formula; brackets first.",
            "Find the truth value.",
        ),
        ("{{ expression }}", "Expression: {{ expression }}", "Evaluate: {{ expression }}"),
        options=True,
        rationale=True,
    ),
    Family(
        "ordering",
        _ordering,
        grid(relation=list(RELATIONS), n=[3, 4, 5], most={"most": True, "least": False}),
        (
            "Who is the {{ superlative }}?",
            "Based on the statements, who is the {{ superlative }}?",
            "Read the facts and name the {{ superlative }} person.",
            "From these comparisons, work out who is the {{ superlative }}.",
            "Which person is the {{ superlative }}?",
            "Put the people in order and tell me who is the {{ superlative }}.",
            "Using only the statements, identify the {{ superlative }}.",
            "The statements compare several people. Who is the {{ superlative }}?",
            "Determine the {{ superlative }} person from the information given.",
            "Answer with a name: who is the {{ superlative }}?",
        ),
        ("{{ facts }}", "Facts: {{ facts }}", "Statements: {{ facts }}"),
        options=True,
        rationale=True,
    ),
    Family(
        "syllogism",
        _syllogism,
        grid(labels=list(VERDICTS), chain={"short": False, "chain": True}, terms=["nonsense", "jobs"]),
        (
            "Based only on the statements, answer the question with {{ labels }}.",
            "Assume the statements are true, even if they sound odd. Answer {{ labels }}.",
            "Does the conclusion follow from the premises? Reply {{ labels }}.",
            "Use the premises alone to answer ({{ labels }}).",
            "Reason from the given statements and answer with one of: {{ labels }}.",
            "Treat the premises as facts. Answer the question: {{ labels }}.",
            "Decide whether the statements settle the question; answer {{ labels }}.",
            "Ignoring what you know about the world, answer using the statements ({{ labels }}).",
            "Apply logical reasoning to the premises. Possible answers: {{ labels }}.",
            "What do the premises say about the question? Answer {{ labels }}.",
        ),
        ("{{ premises }}\n{{ question }}", "Premises: {{ premises }}\nQuestion: {{ question }}", "{{ premises }} {{ question }}"),
        options=True,
        rationale=True,
    ),
    Family(
        "membership",
        _membership,
        grid(kind=["numbers", "words"], size={"short": (3, 5), "long": (8, 12)}, style=list(YES_NO)),
        (
            "Is the item in the list?",
            "Does the list contain the item?",
            "Check whether the item appears in the list.",
            "Tell me if the item is one of the list's entries.",
            "Can the item be found in the list?",
            "Look for the item in the list. Is it there?",
            "Answer whether the list includes the item.",
            "Is the given item a member of the list?",
            "Scan the list: does the item occur in it?",
            "Determine if the item is present in the list.",
        ),
        ("List: {{ items }}\nItem: {{ item }}", "[{{ items }}]\nIs {{ item }} in it?", "Items: {{ items }}\nQuery: {{ item }}"),
        options=True,
    ),
    Family(
        "next_in_sequence",
        _sequence,
        grid(kind=SEQUENCES, shown=[4, 6]),
        (
            "What number comes next in the sequence?",
            "Continue the sequence with the next term.",
            "Find the next number.",
            "Give the term that follows.",
            "Work out the rule and write the next number.",
            "What is the next value in this pattern?",
            "Predict the next number in the series.",
            "Extend the sequence by one term.",
            "Which number should come after the last one?",
            "Complete the pattern with the next number.",
        ),
        ("{{ sequence }}, ?", "Sequence: {{ sequence }}", "{{ sequence }}, ..."),
        rationale=True,
    ),
    Family(
        "threshold_rule",
        _threshold,
        grid(threshold=[50, 100, 500, 1000], labels=list(LABEL_PAIRS)),
        (
            "If the number is greater than {{ threshold }}, answer {{ above }}; otherwise answer {{ below }}.",
            "Answer {{ above }} for numbers above {{ threshold }} and {{ below }} for the rest.",
            "Classify the number: {{ above }} if it is more than {{ threshold }}, else {{ below }}.",
            "Numbers greater than {{ threshold }} are {{ above }}; all others are {{ below }}. Which is this one?",
            "Apply the rule: greater than {{ threshold }} gives {{ above }}, anything else gives {{ below }}.",
            "Say {{ above }} when the number exceeds {{ threshold }} and {{ below }} when it does not.",
            "Compare the number with {{ threshold }}: bigger means {{ above }}, otherwise {{ below }}.",
            "Label the number {{ above }} or {{ below }} depending on whether it is larger than {{ threshold }}.",
            "Use this rule. Over {{ threshold }}: {{ above }}. Not over {{ threshold }}: {{ below }}.",
            "Is the number greater than {{ threshold }}? Reply {{ above }} if so and {{ below }} if not.",
        ),
        NUMBER_INPUTS,
        options=True,
        rationale=True,
    ),
    Family(
        "same_category",
        _same_category,
        grid(group=list(CATEGORY_GROUPS), labels=list(SAME_LABELS)),
        (
            "Do the two words belong to the same category?",
            "Are these two things of the same kind?",
            "Check whether both words name the same type of thing.",
            "Decide if the words fall into one category.",
            "Are the two words members of the same group?",
            "Tell whether the two items are the same sort of thing.",
            "Compare the categories of the two words: same or not?",
            "Would the two words be listed under the same category?",
            "Judge whether these words share a category.",
            "Is the category of the first word the same as the second's?",
        ),
        ("{{ word_a }} and {{ word_b }}", "Word 1: {{ word_a }}\nWord 2: {{ word_b }}", "{{ word_a }} / {{ word_b }}"),
        options=True,
        rationale=True,
    ),
    Family(
        "repeating_pattern",
        _pattern,
        grid(period=[2, 3, 4], symbols=list(SYMBOLS)),
        (
            "What comes next in the repeating pattern?",
            "Continue the pattern with the next item.",
            "The sequence repeats. Give the next element.",
            "Find the next item in this cycle.",
            "Which item follows in the pattern?",
            "Work out the repeating unit and write the next item.",
            "Complete the pattern with one more item.",
            "Predict the next element of the repeating sequence.",
            "Extend the pattern by one item.",
            "What should the next entry be?",
        ),
        ("{{ sequence }}, ?", "Pattern: {{ sequence }}", "{{ sequence }}, ..."),
    ),
)
