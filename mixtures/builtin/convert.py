"""Format conversion: numbers to words, dates, units, identifier styles, key-value records, number bases, lists."""

from __future__ import annotations

import random
from typing import Any

from flanforge.mixtures.builtin.core import Family, NUMBER_INPUTS, grid
from flanforge.mixtures.builtin.extraction import DATE_STYLES, KEYS, random_date
from flanforge.mixtures.builtin.vocab import MONTHS, NUMBER_WORDS, number_words, words


def _to_words(rng: random.Random, span: tuple[int, int], hyphen: bool) -> dict[str, Any]:
    n = rng.randint(*span)
    style = "with hyphens in numbers like forty-two" if hyphen else "without hyphens, as in forty two"
    return {"number": n, "style": style, "answer": number_words(n, hyphen)}


DATES = {
    **DATE_STYLES,
    "eu": lambda d: d.strftime("%d.%m.%Y"),
    "day_month": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
}
DATE_NAMES = {"iso": "YYYY-MM-DD", "us": "MM/DD/YYYY", "long": "Month D, YYYY", "eu": "DD.MM.YYYY", "day_month": "D Month YYYY"}


def _date_format(rng: random.Random, pair: tuple[str, str]) -> dict[str, Any]:
    d = random_date(rng)
    return {"date": DATES[pair[0]](d), "target": DATE_NAMES[pair[1]], "answer": DATES[pair[1]](d)}


UNITS = {
    "km_m": ("kilometres", "metres", 1000),
    "m_cm": ("metres", "centimetres", 100),
    "cm_mm": ("centimetres", "millimetres", 10),
    "kg_g": ("kilograms", "grams", 1000),
    "g_mg": ("grams", "milligrams", 1000),
    "h_min": ("hours", "minutes", 60),
    "min_s": ("minutes", "seconds", 60),
    "day_h": ("days", "hours", 24),
    "week_day": ("weeks", "days", 7),
    "l_ml": ("litres", "millilitres", 1000),
    "year_month": ("years", "months", 12),
    "ft_in": ("feet", "inches", 12),
}


def _units(rng: random.Random, pair: str, down: bool) -> dict[str, Any]:
    big, small, factor = UNITS[pair]
    n = rng.randint(1, 500)
    fact = f"1 {big[:-1] if big != 'feet' else 'foot'} is {factor} {small}"
    if down:
        text, unit, value, how = f"{n} {big}", small, n * factor, f"{n} * {factor} = {n * factor}"
    else:
        text, unit, value, how = f"{n * factor} {small}", big, n, f"{n * factor} / {factor} = {n}"
    return {"quantity": text, "unit": unit, "answer": str(value), "rationale": f"{fact}, so {how}."}


IDENTIFIER_STYLES = {
    "snake": ("snake_case", lambda ws: "_".join(ws)),
    "camel": ("camelCase", lambda ws: ws[0] + "".join(w.title() for w in ws[1:])),
    "pascal": ("PascalCase", lambda ws: "".join(w.title() for w in ws)),
    "kebab": ("kebab-case", lambda ws: "-".join(ws)),
    "constant": ("CONSTANT_CASE", lambda ws: "_".join(ws).upper()),
    "words": ("plain lower-case words", lambda ws: " ".join(ws)),
}


def _identifier(rng: random.Random, pair: tuple[str, str]) -> dict[str, Any]:
    ws = words(rng, "mixed", 2, 4)
    source, target = IDENTIFIER_STYLES[pair[0]], IDENTIFIER_STYLES[pair[1]]
    return {"text": source[1](ws), "style": target[0], "answer": target[1](ws)}


def _kv_json(rng: random.Random, to_json: bool, n: int, equals: bool) -> dict[str, Any]:
    pairs = [(k, KEYS[k](rng)) for k in rng.sample(list(KEYS), n)]
    kv = ", ".join(f"{k}={v}" for k, v in pairs) if equals else "; ".join(f"{k}: {v}" for k, v in pairs)
    js = "{" + ", ".join(f'"{k}": "{v}"' for k, v in pairs) + "}"
    layout = "key=value pairs separated by commas" if equals else "key: value pairs separated by semicolons"
    return {"text": kv if to_json else js, "target": "a JSON object with string values" if to_json else layout,
            "answer": js if to_json else kv}


BASES = {
    "dec_bin": ("decimal", "binary", 10, 2),
    "bin_dec": ("binary", "decimal", 2, 10),
    "dec_hex": ("decimal", "hexadecimal", 10, 16),
    "hex_dec": ("hexadecimal", "decimal", 16, 10),
    "dec_oct": ("decimal", "octal", 10, 8),
    "oct_dec": ("octal", "decimal", 8, 10),
}


def _in_base(n: int, base: int) -> str:
    return {2: format(n, "b"), 8: format(n, "o"), 10: str(n), 16: format(n, "X")}[base]


def _base(rng: random.Random, pair: str, hi: int) -> dict[str, Any]:
    src, dst, b1, b2 = BASES[pair]
    n = rng.randint(2, hi)
    return {"number": _in_base(n, b1), "source": src, "target": dst, "answer": _in_base(n, b2)}


LIST_FORMS = {
    "bullets": ("a bulleted list, one item per line", lambda xs: "\n".join(f"- {x}" for x in xs)),
    "numbered": ("a numbered list, one item per line", lambda xs: "\n".join(f"{i}. {x}" for i, x in enumerate(xs, 1))),
    "sentence": ('a sentence-style list ("a, b and c")', lambda xs: ", ".join(xs[:-1]) + f" and {xs[-1]}"),
    "csv": ("a comma-separated line", lambda xs: ", ".join(xs)),
}
LIST_CONVERSIONS = {"csv_bullets": ("csv", "bullets"), "bullets_csv": ("bullets", "csv"), "csv_sentence": ("csv", "sentence"),
                    "numbered_csv": ("numbered", "csv")}


def _list_format(rng: random.Random, conversion: tuple[str, str], pool: str) -> dict[str, Any]:
    xs = words(rng, pool, 3, 6)
    src, dst = LIST_FORMS[conversion[0]], LIST_FORMS[conversion[1]]
    return {"text": src[1](xs), "target": dst[0], "answer": dst[1](xs)}


def _temperature(rng: random.Random, to_fahrenheit: bool, span: tuple[int, int]) -> dict[str, Any]:
    c = 5 * rng.randint(*span)  # a multiple of 5 degrees Celsius is a whole number of degrees Fahrenheit
    f = c * 9 // 5 + 32
    if to_fahrenheit:
        return {"temperature": f"{c} degrees Celsius", "unit": "Fahrenheit", "answer": str(f),
                "rationale": f"F = C * 9 / 5 + 32 = {c} * 9 / 5 + 32 = {f}."}
    return {"temperature": f"{f} degrees Fahrenheit", "unit": "Celsius", "answer": str(c),
            "rationale": f"C = (F - 32) * 5 / 9 = ({f} - 32) * 5 / 9 = {c}."}


def _time_format(rng: random.Random, to12: bool, seconds: bool) -> dict[str, Any]:
    h, m, s = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    tail = f":{s:02d}" if seconds else ""
    h24 = f"{h:02d}:{m:02d}{tail}"
    h12 = f"{(h - 1) % 12 + 1}:{m:02d}{tail} {'AM' if h < 12 else 'PM'}"
    return {"time": h24 if to12 else h12, "target": "the 12-hour clock with AM/PM" if to12 else "the 24-hour clock",
            "answer": h12 if to12 else h24}


def _spell_digits(rng: random.Random, span: tuple[int, int], sep: str) -> dict[str, Any]:
    digits = [rng.randrange(10) for _ in range(rng.randint(*span))]
    return {"digits": sep.join(map(str, digits)), "answer": sep.join(NUMBER_WORDS[d] for d in digits)}


FAMILIES = (
    Family(
        "number_to_words",
        _to_words,
        grid(span={"tens": (0, 99), "hundreds": (100, 999), "thousands": (1000, 9999)}, hyphen={"hyphen": True, "spaced": False}),
        (
            "Write the number in words, {{ style }}.",
            "Spell out the number in English, {{ style }}.",
            "How is this number written in words? Write it {{ style }}.",
            "Convert the digits to English words ({{ style }}).",
            "Express the number as words, {{ style }}.",
            "Give the English name of the number, {{ style }}.",
            "Write out the number the way you would say it, {{ style }}.",
            "Turn the numeral into words, {{ style }}.",
            "What is the number in written form? Write it {{ style }}.",
            "Translate the number into words, {{ style }}.",
        ),
        NUMBER_INPUTS,
        inverted=(
            ("Write the number these words describe, in digits.", "{{ answer }}", "{{ number }}"),
            ("Convert the number words to a numeral.", "Words: {{ answer }}", "{{ number }}"),
        ),
    ),
    Family(
        "date_format",
        _date_format,
        grid(pair={f"{a}_to_{b}": (a, b) for a in DATES for b in DATES if a != b}),
        (
            "Rewrite the date in the format {{ target }}.",
            "Convert the date to {{ target }}.",
            "Change the date's format to {{ target }}.",
            "Express this date as {{ target }}.",
            "Reformat the date: {{ target }}.",
            "Write the same date using the {{ target }} format.",
            "What is this date in {{ target }} form?",
            "Give the date in the format {{ target }}.",
            "Turn the date into {{ target }}.",
            "Output the date formatted as {{ target }}.",
        ),
        ("{{ date }}", "Date: {{ date }}", "The date is {{ date }}."),
    ),
    Family(
        "unit_conversion",
        _units,
        grid(pair=list(UNITS), down={"to_small": True, "to_large": False}),
        (
            "Convert the quantity to {{ unit }}.",
            "How many {{ unit }} is this?",
            "Express the amount in {{ unit }}.",
            "Change the units to {{ unit }}.",
            "Give the quantity in {{ unit }}; answer with the number only.",
            "What is this quantity in {{ unit }}?",
            "Rewrite the measurement in {{ unit }}.",
            "Work out the value in {{ unit }}.",
            "Convert to {{ unit }} and give the number.",
            "Find how many {{ unit }} the quantity equals.",
        ),
        ("{{ quantity }}", "Quantity: {{ quantity }}", "Measurement: {{ quantity }}"),
        rationale=True,
    ),
    Family(
        "identifier_style",
        _identifier,
        grid(pair={f"{a}_to_{b}": (a, b) for a in IDENTIFIER_STYLES for b in IDENTIFIER_STYLES if a != b}),
        (
            "Convert the identifier to {{ style }}.",
            "Rewrite the name in {{ style }}.",
            "Change the naming style to {{ style }}.",
            "Express this identifier in {{ style }}.",
            "Reformat the name as {{ style }}.",
            "What is this name in {{ style }}?",
            "Turn the identifier into {{ style }}.",
            "Give the same words written in {{ style }}.",
            "Apply {{ style }} to the following name.",
            "Output the identifier using {{ style }}.",
        ),
        ("{{ text }}", "Name: {{ text }}", "Identifier: {{ text }}"),
    ),
    Family(
        "record_format",
        _kv_json,
        grid(to_json={"to_json": True, "from_json": False}, n=[2, 3, 4], equals={"equals": True, "colon": False}),
        (
            "Convert the record to {{ target }}.",
            "Rewrite the data as {{ target }}.",
            "Express the fields as {{ target }}.",
            "Reformat the record into {{ target }}.",
            "Turn this into {{ target }}, keeping the field order.",
            "Give the same fields written as {{ target }}.",
            "Change the format of the record to {{ target }}.",
            "Output the record as {{ target }}.",
            "Translate the data into {{ target }}.",
            "Serialise the record as {{ target }}.",
        ),
        ("{{ text }}", "Record: {{ text }}", "Input: {{ text }}"),
    ),
    Family(
        "base_conversion",
        _base,
        grid(pair=list(BASES), hi={"byte": 255, "word": 65535}),
        (
            "Convert the {{ source }} number to {{ target }}.",
            "Write this {{ source }} number in {{ target }}.",
            "What is the {{ source }} number in {{ target }}?",
            "Express the {{ source }} value in {{ target }}.",
            "Change the number from {{ source }} to {{ target }}.",
            "Give the {{ target }} form of this {{ source }} number.",
            "Translate the number from base {{ source }} to {{ target }}.",
            "Rewrite the {{ source }} numeral as {{ target }}.",
            "Turn the {{ source }} number into {{ target }}.",
            "Output the {{ target }} representation of the {{ source }} number.",
        ),
        ("{{ number }}", "Number: {{ number }}", "Input: {{ number }}"),
    ),
    Family(
        "list_format",
        _list_format,
        grid(conversion=LIST_CONVERSIONS, pool=["animal", "fruit", "tool", "color"]),
        (
            "Rewrite the list as {{ target }}.",
            "Convert the items to {{ target }}.",
            "Format the list as {{ target }}.",
            "Present the same items as {{ target }}.",
            "Turn this list into {{ target }}.",
            "Change the layout of the list to {{ target }}.",
            "Give the items written as {{ target }}.",
            "Reformat the items into {{ target }}.",
            "Output the list as {{ target }}, keeping the order.",
            "Write these items out as {{ target }}.",
        ),
        ("{{ text }}", "List:\n{{ text }}", "Items:\n{{ text }}"),
    ),
    Family(
        "temperature",
        _temperature,
        grid(to_fahrenheit={"c_to_f": True, "f_to_c": False}, span={"mild": (-40, 40), "wide": (-100, 200)}),
        (
            "Convert the temperature to degrees {{ unit }}.",
            "What is this temperature in {{ unit }}?",
            "Express the temperature in degrees {{ unit }}.",
            "Give the temperature on the {{ unit }} scale.",
            "How many degrees {{ unit }} is this?",
            "Change the temperature to {{ unit }}; answer with the number.",
            "Rewrite the temperature in {{ unit }}.",
            "Work out the temperature in {{ unit }}.",
            "Find the equivalent temperature in degrees {{ unit }}.",
            "Translate the reading into {{ unit }}.",
        ),
        ("{{ temperature }}", "Temperature: {{ temperature }}", "It is {{ temperature }}."),
        rationale=True,
    ),
    Family(
        "time_format",
        _time_format,
        grid(to12={"to_12h": True, "to_24h": False}, seconds={"minutes": False, "seconds": True}),
        (
            "Write the time using {{ target }}.",
            "Convert the time to {{ target }}.",
            "Express this time on {{ target }}.",
            "What is the time on {{ target }}?",
            "Rewrite the time for {{ target }}.",
            "Give the same time in the format of {{ target }}.",
            "Change the time to {{ target }}.",
            "Reformat the clock time to {{ target }}.",
            "Show the time as {{ target }} would.",
            "Translate the time into {{ target }}.",
        ),
        ("{{ time }}", "Time: {{ time }}", "The time is {{ time }}."),
    ),
    Family(
        "spell_digits",
        _spell_digits,
        grid(span={"short": (3, 4), "medium": (5, 7), "long": (8, 10)}, sep={"space": " ", "comma": ", "}),
        (
            "Spell out each digit as a word.",
            "Replace every digit with its English name.",
            "Write the digits as words, one word per digit.",
            "Read the digits aloud, writing each one as a word.",
            "Convert each digit into a word.",
            "Turn the digit sequence into words.",
            "Write the name of every digit, in order.",
            "Say each digit in words, keeping the separators.",
            "Give the English word for each digit.",
            "Translate the digits to words one by one.",
        ),
        ("{{ digits }}", "Digits: {{ digits }}", "Input: {{ digits }}"),
        inverted=(("Write the digits that these words name.", "{{ answer }}", "{{ digits }}"),),
    ),
)
