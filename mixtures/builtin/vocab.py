"""Word lists the families draw from. No word belongs to two categories."""

from __future__ import annotations

import random

CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": tuple("bear camel cat cow deer dog duck eagle fox frog goat horse lion monkey mouse owl rabbit sheep snake tiger wolf zebra".split()),
    "fruit": tuple("apple apricot banana cherry date fig grape guava kiwi lemon lychee mango melon orange papaya peach pear plum quince".split()),
    "color": tuple("amber beige black blue brown crimson cyan gray green indigo khaki magenta maroon navy pink purple red scarlet teal violet white yellow".split()),
    "vehicle": tuple("bicycle boat bus canoe car ferry jeep kayak motorbike plane rocket scooter ship subway taxi tractor train tram truck van".split()),
    "tool": tuple("anvil axe chisel clamp drill hammer ladder mallet pliers rake saw shovel spanner trowel wrench scissors screwdriver".split()),
    "instrument": tuple("banjo bassoon cello clarinet drum flute guitar harp oboe organ piano saxophone trombone trumpet tuba ukulele viola violin".split()),
    "sport": tuple("archery baseball boxing cricket cycling diving fencing golf hockey judo karate rowing rugby sailing skiing soccer surfing tennis".split()),
    "furniture": tuple("bed bench bookcase cabinet chair couch cradle desk dresser futon hammock shelf sofa stool table wardrobe".split()),
    "vegetable": tuple("beet broccoli cabbage carrot celery corn garlic kale leek lettuce onion pea pepper potato pumpkin radish spinach turnip yam".split()),
    "clothing": tuple("belt blouse boots cap coat dress gloves hat jacket jeans scarf shirt shorts skirt socks sweater tie vest".split()),
    "job": tuple("baker chef clerk dentist doctor farmer judge lawyer nurse pilot plumber poet sailor singer tailor teacher waiter writer".split()),
    "country": tuple("brazil canada chile egypt france germany ghana india italy japan kenya mexico nepal norway peru poland spain sweden".split()),
    "metal": tuple("aluminium brass bronze copper gold iron lead nickel platinum silver steel tin titanium zinc".split()),
}
WORDS: tuple[str, ...] = tuple(sorted({w for ws in CATEGORIES.values() for w in ws}))
CATEGORY_OF = {w: c for c, ws in CATEGORIES.items() for w in ws}
POOLS: dict[str, tuple[str, ...]] = {"mixed": WORDS, **CATEGORIES}
"""Word pools a variant can draw its text from: every category, or all words mixed."""

NAMES = tuple(
    "Alice Bruno Carla Dmitri Elena Farid Grace Hiro Ines Jamal Kira Liam Maya Nadia Omar Priya Quinn Rosa Sami Tara "
    "Umar Vera Wendy Xavier Yusuf Zoe Aaron Bianca Chen Dalia Emil Fatima Goran Hana Ivan Julia".split()
)
CITIES = tuple(
    "Accra Berlin Cairo Dublin Lima Lisbon London Madrid Manila Nairobi Oslo Paris Prague Quito Rome Seoul Sydney Tokyo "
    "Vienna Warsaw".split()
)
PLURALS = {c: c + "s" for c in CATEGORIES} | {"country": "countries", "clothing": "pieces of clothing", "furniture": "pieces of furniture"}
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()
)
TENS_WORDS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January February March April May June July August September October November December".split()
)


def words(rng: random.Random, pool: str, lo: int, hi: int) -> list[str]:
    """``lo..hi`` distinct words from a pool (all of them when the pool is smaller)."""
    source = POOLS[pool]
    return rng.sample(source, min(rng.randint(lo, hi), len(source)))


def number_words(n: int, hyphen: bool = True) -> str:
    """``n`` (0..9999) in English words: 342 -> 'three hundred forty-two'."""
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS_WORDS[tens] + (("-" if hyphen else " ") + NUMBER_WORDS[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{NUMBER_WORDS[hundreds]} hundred" + (f" {number_words(rest, hyphen)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{number_words(thousands, hyphen)} thousand" + (f" {number_words(rest, hyphen)}" if rest else "")


