"""Extraction: numbers, values by key, named things, words by position, date parts, contacts, bracketed text.

Where the thing asked for may be absent, the target is a placeholder
(``none`` / ``not given``) rather than an empty string, as the Sample Design
Engineering study recommends.
"""

from __future__ import annotations

import datetime
import random
from typing import Any

from flanforge.mixtures.builtin.core import Family, TEXT_INPUTS, grid
from flanforge.mixtures.builtin.lists import NONE, POSITIONS
from flanforge.mixtures.builtin.vocab import CATEGORIES, CITIES, MONTHS, NAMES, POOLS, WORDS, words

NUMBER_PICKS = {"all": "every number", "first": "the first number", "last": "the last number",
                "largest": "the largest number", "smallest": "the smallest number"}


def _numbers(rng: random.Random, pick: str, count: tuple[int, int]) -> dict[str, Any]:
    tokens = words(rng, "mixed", 4, 8)
    nums = [rng.randint(0, 999) for _ in range(rng.randint(*count))]
    for x in nums:
        tokens.insert(rng.randint(0, len(tokens)), str(x))
    found = [int(t) for t in tokens if t.isdigit()]
    chosen = {"all": found, "first": found[:1], "last": found[-1:], "largest": sorted(found)[-1:], "smallest": sorted(found)[:1]}[pick]
    return {"text": " ".join(tokens), "target": NUMBER_PICKS[pick], "answer": ", ".join(map(str, chosen)) or NONE}


KEYS = {
    "name": lambda rng: rng.choice(NAMES),
    "color": lambda rng: rng.choice(CATEGORIES["color"]),
    "city": lambda rng: rng.choice(CITIES),
    "size": lambda rng: str(rng.randint(1, 60)),
    "age": lambda rng: str(rng.randint(1, 99)),
    "price": lambda rng: f"{rng.randint(1, 500)} dollars",
    "code": lambda rng: "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=5)),
    "team": lambda rng: rng.choice(CATEGORIES["animal"]) + "s",
    "day": lambda rng: rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")),
    "level": lambda rng: str(rng.randint(1, 9)),
}
LAYOUTS = {
    "colon": lambda pairs: "; ".join(f"{k}: {v}" for k, v in pairs),
    "equals": lambda pairs: ", ".join(f"{k}={v}" for k, v in pairs),
    "json": lambda pairs: "{" + ", ".join(f'"{k}": "{v}"' for k, v in pairs) + "}",
    "lines": lambda pairs: "\n".join(f"{k}: {v}" for k, v in pairs),
}
NOT_GIVEN = "not given"


def _key_value(rng: random.Random, layout: str, n: int, missing: bool) -> dict[str, Any]:
    keys = rng.sample(list(KEYS), n + 1)
    pairs = [(k, KEYS[k](rng)) for k in keys[:n]]
    ask_missing = missing and rng.random() < 0.3
    key = keys[n] if ask_missing else rng.choice(keys[:n])
    answer = NOT_GIVEN if ask_missing else dict(pairs)[key]
    return {"record": LAYOUTS[layout](pairs), "key": key, "answer": answer}


ENTITIES = {
    "people": tuple(NAMES),
    "cities": CITIES,
    "animals": CATEGORIES["animal"],
    "colors": CATEGORIES["color"],
    "fruits": CATEGORIES["fruit"],
}


def _entities(rng: random.Random, kind: str, count: tuple[int, int]) -> dict[str, Any]:
    filler = [w for w in WORDS if w not in ENTITIES[kind]]
    tokens = rng.sample(filler, rng.randint(4, 7))
    found = rng.sample(ENTITIES[kind], rng.randint(*count))
    for e in found:
        tokens.insert(rng.randint(0, len(tokens)), e)
    in_order = [t for t in tokens if t in found]
    return {"text": " ".join(tokens), "kind": kind, "answer": ", ".join(in_order) or NONE}


def _word_at(rng: random.Random, position: str, pool: str) -> dict[str, Any]:
    ws = words(rng, pool, 6, 9)
    return {"text": " ".join(ws), "position": position.replace("_", " "), "answer": ws[POSITIONS[position]]}


DATE_STYLES = {
    "iso": lambda d: d.isoformat(),
    "us": lambda d: d.strftime("%m/%d/%Y"),
    "long": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
}
DATE_PARTS = {
    "year": lambda d: str(d.year),
    "month": lambda d: MONTHS[d.month - 1],
    "day": lambda d: str(d.day),
    "weekday": lambda d: d.strftime("%A"),
}


def random_date(rng: random.Random) -> datetime.date:
    return datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 100))


def _date_part(rng: random.Random, part: str, style: str) -> dict[str, Any]:
    d = random_date(rng)
    return {"date": DATE_STYLES[style](d), "part": part, "answer": DATE_PARTS[part](d)}


CONTACTS = {
    "email": lambda rng, name: f"{name.lower()}.{rng.choice(WORDS)}@{rng.choice(('mail', 'post', 'inbox'))}.example",
    "phone": lambda rng, name: f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
    "url": lambda rng, name: f"https://{rng.choice(WORDS)}.example/{name.lower()}",
}
CONTACT_NAMES = {"email": "email address", "phone": "phone number", "url": "web address"}


def _contact(rng: random.Random, field: str, always: bool) -> dict[str, Any]:
    name = rng.choice(NAMES)
    present = always or rng.random() < 0.6
    value = CONTACTS[field](rng, name)
    place = rng.choice(CITIES)
    text = f"{name} lives in {place}" + (f" and can be reached at {value}." if present else " and asked not to be contacted.")
    return {"text": text, "field": CONTACT_NAMES[field], "answer": value if present else NONE}


BRACKETS = {"parentheses": "()", "square brackets": "[]", "double quotes": '""', "curly braces": "{}", "angle brackets": "<>"}


def _between(rng: random.Random, brackets: str, several: bool) -> dict[str, Any]:
    left, right = BRACKETS[brackets]
    tokens = words(rng, "mixed", 4, 7)
    inside = [" ".join(words(rng, "mixed", 1, 2)) for _ in range(rng.randint(2, 3) if several else 1)]
    for part in inside:
        tokens.insert(rng.randint(0, len(tokens)), f"{left}{part}{right}")
    text = " ".join(tokens)
    in_order = sorted(inside, key=lambda p: text.index(f"{left}{p}{right}"))
    return {"text": text, "brackets": brackets, "answer": ", ".join(in_order)}


def _hashtags(rng: random.Random, keep_hash: bool, sep: str) -> dict[str, Any]:
    tokens = words(rng, "mixed", 4, 8)
    tags = words(rng, "mixed", 0, 3)
    for tag in tags:
        tokens.insert(rng.randint(0, len(tokens)), f"#{tag}")
    found = [t if keep_hash else t[1:] for t in tokens if t.startswith("#")]
    form = 'keep the "#"' if keep_hash else 'drop the "#"'
    return {"text": " ".join(tokens), "form": form, "answer": sep.join(found) or NONE}


FAMILIES = (
    Family(
        "extract_numbers",
        _numbers,
        grid(pick=list(NUMBER_PICKS), count={"maybe": (0, 2), "several": (1, 4)}),
        (
            'Extract {{ target }} from the text. Answer "none" if there is no number.',
            "Find {{ target }} that appears in the text.",
            "What is {{ target }} in the text? If there are no numbers, say none.",
            "Pull out {{ target }} mentioned below.",
            "Read the text and give {{ target }} in it.",
            "Scan the words for numbers and report {{ target }}.",
            "Which is {{ target }} in the following text?",
            "Locate {{ target }} in the text; reply none when there is none.",
            "Identify {{ target }} written in the text.",
            "From the text, return {{ target }}.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "key_value_lookup",
        _key_value,
        grid(layout=list(LAYOUTS), n={"three": 3, "five": 5}, missing={"present": False, "maybe_missing": True}),
        (
            'Look up the value of the key in the record. Answer "not given" if the record does not have it.',
            "What value does the record give for the key?",
            "Find the key in the record and report its value.",
            "Read the record and return the value stored under the key (or not given).",
            "Give the value associated with the key.",
            "Extract the field named by the key from the record.",
            "Which value is paired with the key in the record?",
            "Retrieve the key's value from the data.",
            "In the record, what is the key set to?",
            "Return the entry for the key; say not given if it is missing.",
        ),
        ("Record: {{ record }}\nKey: {{ key }}", "{{ record }}\n\nWhat is the {{ key }}?", "Data:\n{{ record }}\nField: {{ key }}"),
    ),
    Family(
        "extract_entities",
        _entities,
        grid(kind=list(ENTITIES), count={"maybe": (0, 1), "one_two": (1, 2), "two_three": (2, 3)}),
        (
            'List the {{ kind }} mentioned in the text, in order. Answer "none" if there are none.',
            "Which {{ kind }} does the text mention?",
            "Extract all {{ kind }} from the text.",
            "Find every one of the {{ kind }} in the words below.",
            "Pick out the {{ kind }} named in the text; write none if there are none.",
            "Write down the {{ kind }} that appear, in the order they appear.",
            "What {{ kind }} are in the text?",
            "Identify the {{ kind }} in the following.",
            "Return the {{ kind }} found in the text, separated by commas.",
            "Scan the text for {{ kind }} and list them.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "word_at_position",
        _word_at,
        grid(position=list(POSITIONS), pool=list(POOLS)),
        (
            "What is the {{ position }} word of the text?",
            "Give the {{ position }} word.",
            "Which word comes {{ position }} in the text?",
            "Return the text's {{ position }} word.",
            "Write down the {{ position }} word of the sentence.",
            "Find the word in the {{ position }} position.",
            "Read the text and report its {{ position }} word.",
            "Name the {{ position }} word below.",
            "Extract the {{ position }} word.",
            "Output only the {{ position }} word of the input.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "date_part",
        _date_part,
        grid(part=list(DATE_PARTS), style=list(DATE_STYLES)),
        (
            "What is the {{ part }} of the date?",
            "Give the {{ part }} of this date.",
            "Extract the {{ part }} from the date.",
            "Which {{ part }} does the date fall in or on?",
            "Read the date and report its {{ part }}.",
            "Find the {{ part }} in the following date.",
            "Tell me the {{ part }} of the given date.",
            "Return only the {{ part }} of the date.",
            "Identify the {{ part }} of this date.",
            "From the date, what is the {{ part }}?",
        ),
        ("{{ date }}", "Date: {{ date }}", "The date is {{ date }}."),
    ),
    Family(
        "extract_contact",
        _contact,
        grid(field=list(CONTACTS), always={"always": True, "sometimes": False}),
        (
            'Extract the {{ field }} from the text. Answer "none" if there is none.',
            "What is the {{ field }} given in the text?",
            "Find the {{ field }} mentioned below.",
            "Pull the {{ field }} out of the sentence, or say none.",
            "Which {{ field }} does the text contain?",
            "Copy the {{ field }} from the text exactly.",
            "Identify the {{ field }} in this text.",
            "Return the {{ field }}; reply none if the text has none.",
            "Locate the {{ field }} in the text.",
            "Give the {{ field }} written in the text.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "extract_bracketed",
        _between,
        grid(brackets={k.replace(" ", "_"): k for k in BRACKETS}, several={"one": False, "several": True}),
        (
            "What text is inside the {{ brackets }}?",
            "Extract everything written between {{ brackets }}, in order.",
            "List the parts of the text enclosed in {{ brackets }}.",
            "Find the words inside {{ brackets }}.",
            "Give the contents of the {{ brackets }}, separated by commas.",
            "Pull out the text wrapped in {{ brackets }}.",
            "Which words appear between {{ brackets }}?",
            "Return what the {{ brackets }} contain.",
            "Copy the text found inside {{ brackets }}.",
            "Identify the enclosed text ({{ brackets }}).",
        ),
        ("{{ text }}", "Text: {{ text }}", "Input: {{ text }}"),
    ),
    Family(
        "extract_hashtags",
        _hashtags,
        grid(keep_hash={"with_hash": True, "bare": False}, sep={"comma": ", ", "space": " "}),
        (
            'List the hashtags in the post ({{ form }}). Answer "none" if there are none.',
            "Which hashtags does the post use? Write them and {{ form }}.",
            "Extract every hashtag from the text; {{ form }}.",
            "Find the hashtags, in order ({{ form }}).",
            "Pull out the words tagged with # and {{ form }}.",
            "What are the post's hashtags? {{ form | capitalize }}.",
            "Return the hashtags in the text, or none; {{ form }}.",
            "Identify all hashtags below and {{ form }}.",
            "Collect the hashtags from this post ({{ form }}).",
            "Give the tags marked with a hash sign; {{ form }}.",
        ),
        ("{{ text }}", "Post: {{ text }}", '"{{ text }}"'),
    ),
)
