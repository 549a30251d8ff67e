"""String edits: word order, spelling, case, letters removed, replaced or shifted."""

from __future__ import annotations

import random
import string
from typing import Any

from flanforge.mixtures.builtin.core import Family, TEXT_INPUTS, grid
from flanforge.mixtures.builtin.vocab import POOLS, words

LENGTHS = {"short": (2, 4), "medium": (4, 6), "long": (6, 9)}
VOWELS = set("aeiou")


def _reverse_words(rng: random.Random, pool: str, size: tuple[int, int]) -> dict[str, Any]:
    ws = words(rng, pool, *size)
    return {"text": " ".join(ws), "answer": " ".join(reversed(ws))}


def _reverse_letters(rng: random.Random, pool: str, n: int) -> dict[str, Any]:
    text = " ".join(words(rng, pool, n, n))
    return {"text": text, "answer": text[::-1]}


CASES = {
    "upper": ("upper case", str.lower, str.upper),
    "lower": ("lower case", str.upper, str.lower),
    "title": ("title case (every word capitalised)", str.lower, str.title),
    "sentence": ("sentence case (only the first letter capitalised)", str.upper, str.capitalize),
    "swap": ("swapped case (every letter's case flipped)", None, str.swapcase),
}


def _change_case(rng: random.Random, pool: str, mode: str) -> dict[str, Any]:
    name, prepare, convert = CASES[mode]
    text = " ".join(words(rng, pool, 3, 6))
    text = prepare(text) if prepare else "".join(c.upper() if rng.random() < 0.5 else c for c in text)
    return {"text": text, "case": name, "answer": convert(text)}


def _remove_letter(rng: random.Random, letter: str, size: tuple[int, int]) -> dict[str, Any]:
    text = " ".join(words(rng, "mixed", *size))
    return {"text": text, "letter": letter, "answer": " ".join(text.replace(letter, "").split())}


REPLACEMENTS = "ao ei ou ia sz td rl nm ck ue lr mn dt pb bp gk hx yi wv fv".split()


def _replace_letter(rng: random.Random, pair: str) -> dict[str, Any]:
    text = " ".join(words(rng, "mixed", 3, 6))
    return {"text": text, "old": pair[0], "new": pair[1], "answer": text.replace(pair[0], pair[1])}


ACRONYM_STYLES = {
    "upper": ("in capital letters", str.upper, ""),
    "upper_dots": ("in capital letters, each followed by a period", str.upper, "."),
    "lower": ("in lower case", str.lower, ""),
    "lower_dots": ("in lower case, each followed by a period", str.lower, "."),
}


def _acronym(rng: random.Random, style: str, size: tuple[int, int]) -> dict[str, Any]:
    name, case, dot = ACRONYM_STYLES[style]
    ws = words(rng, "mixed", *size)
    return {"text": " ".join(ws), "style": name, "answer": "".join(case(w[0]) + dot for w in ws)}


def _caesar(rng: random.Random, shift: int, decode: bool) -> dict[str, Any]:
    plain = " ".join(words(rng, "mixed", 2, 4))
    coded = "".join(chr((ord(c) - 97 + shift) % 26 + 97) if c in string.ascii_lowercase else c for c in plain)
    text, answer = (coded, plain) if decode else (plain, coded)
    return {"text": text, "shift": shift, "direction": "backward" if decode else "forward", "answer": answer}


def _sort_letters(rng: random.Random, pool: str, descending: bool) -> dict[str, Any]:
    ws = words(rng, pool, 2, 2)
    order = "reverse alphabetical order" if descending else "alphabetical order"
    return {"text": " ".join(ws), "order": order, "answer": " ".join("".join(sorted(w, reverse=descending)) for w in ws)}


SEPARATORS = {
    "hyphen": ('a hyphen ("-")', "-"),
    "underscore": ('an underscore ("_")', "_"),
    "plus": ('a plus sign ("+")', "+"),
    "slash": ('a slash ("/")', "/"),
    "pipe": ('a vertical bar ("|")', "|"),
    "comma": ('a comma and a space (", ")', ", "),
    "semicolon": ('a semicolon and a space ("; ")', "; "),
    "dot": ('a period (".")', "."),
    "none": ("nothing (no space at all)", ""),
    "and": ('the word "and"', " and "),
}


def _join_words(rng: random.Random, sep: str, size: tuple[int, int]) -> dict[str, Any]:
    name, joiner = SEPARATORS[sep]
    ws = words(rng, "mixed", *size)
    return {"text": " ".join(ws), "separator": name, "answer": joiner.join(ws)}


def _repeat_words(rng: random.Random, pool: str, times: int) -> dict[str, Any]:
    ws = words(rng, pool, 2, 4)
    said = "twice" if times == 2 else "three times"
    return {"text": " ".join(ws), "times": said, "answer": " ".join(w for w in ws for _ in range(times))}


def _strip_letters(rng: random.Random, pool: str, kind: str) -> dict[str, Any]:
    ws = words(rng, pool, 2, 5)
    drop = (lambda c: c in VOWELS) if kind == "vowels" else (lambda c: c not in VOWELS)
    kept = ("".join(c for c in w if not drop(c)) for w in ws)
    return {"text": " ".join(ws), "kind": kind, "answer": " ".join(k for k in kept if k)}


def _dedupe_words(rng: random.Random, pool: str, extra: int) -> dict[str, Any]:
    base = words(rng, pool, 3, 5)
    seq = base + rng.choices(base, k=extra)
    rng.shuffle(seq)
    return {"text": " ".join(seq), "answer": " ".join(dict.fromkeys(seq))}


ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": -1}


def _insert_word(rng: random.Random, pool: str, position: str) -> dict[str, Any]:
    ws = words(rng, pool, 4, 7)
    new = rng.choice([w for w in POOLS["mixed"] if w not in ws])
    out = list(ws)
    out.insert(ORDINALS[position] + 1, new)
    return {"text": " ".join(ws), "word": new, "position": position, "answer": " ".join(out)}


SWAPS = {"first_second": ("first", "second"), "first_last": ("first", "last"), "second_third": ("second", "third"),
         "second_last": ("second", "last")}


def _swap_words(rng: random.Random, pool: str, pair: tuple[str, str]) -> dict[str, Any]:
    ws = words(rng, pool, 4, 7)
    i, j = ORDINALS[pair[0]], ORDINALS[pair[1]] % len(ws)
    out = list(ws)
    out[i], out[j] = out[j], out[i]
    return {"text": " ".join(ws), "first": pair[0], "second": pair[1], "answer": " ".join(out)}


FAMILIES = (
    Family(
        "reverse_words",
        _reverse_words,
        grid(pool=list(POOLS), size=LENGTHS),
        (
            "Reverse the order of the words.",
            "Write the words of the text in reverse order.",
            "Rewrite this so that the last word comes first and the first word comes last.",
            "Read the words from right to left and write them down.",
            "Flip the word order of the following sequence.",
            "List these words backwards, keeping each word spelled the same.",
            "Put the words in the opposite order.",
            "What do you get if you reverse the order of these words?",
            "Turn this word sequence around, last word first.",
            "Reverse the sequence of words below. Do not change the words themselves.",
            "Output the words in reverse order, separated by single spaces.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "reverse_letters",
        _reverse_letters,
        grid(pool=list(POOLS), n={"two": 2, "three": 3}),
        (
            "Spell the text backwards, letter by letter.",
            "Reverse all the characters in the text.",
            "Write the text from its last character to its first.",
            "Mirror this text: reverse every letter, including the order of the words.",
            "What is this text when read backwards one character at a time?",
            "Reverse the string.",
            "Produce the character-level reversal of the input.",
            "Write the letters of the text in reverse order, spaces included.",
            "Read the text right to left and write out exactly what you see.",
            "Turn the whole string around so it starts with its final letter.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "change_case",
        _change_case,
        grid(pool=list(POOLS), mode=list(CASES)),
        (
            "Convert the text to {{ case }}.",
            "Rewrite the following in {{ case }}.",
            "Change the capitalisation of the text to {{ case }}.",
            "Write this again using {{ case }}.",
            "Apply {{ case }} to the words below.",
            "Put the text into {{ case }}, changing nothing but the letter case.",
            "How does this text look in {{ case }}?",
            "Fix the letter case: the text should be in {{ case }}.",
            "Reformat the capitalisation so the text is in {{ case }}.",
            "Return the same words, but in {{ case }}.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "remove_letter",
        _remove_letter,
        grid(letter=list("aeioulnrst"), size={"short": (3, 5), "long": (6, 9)}),
        (
            "Remove every letter '{{ letter }}' from the text.",
            "Delete all occurrences of '{{ letter }}'.",
            "Rewrite the text without the letter {{ letter }}.",
            "Strip out each '{{ letter }}' and keep everything else as it is.",
            "What is left of the text after all the '{{ letter }}'s are taken out?",
            "Erase the character '{{ letter }}' wherever it appears.",
            "Drop the letter {{ letter }} from every word.",
            "Write the text again, leaving out the letter '{{ letter }}'.",
            "Filter the letter '{{ letter }}' out of this text.",
            "Remove '{{ letter }}' from the following, changing nothing else.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "replace_letter",
        _replace_letter,
        grid(pair=REPLACEMENTS),
        (
            "Replace every '{{ old }}' with '{{ new }}'.",
            "Change each letter {{ old }} in the text to {{ new }}.",
            "Swap out all '{{ old }}' characters for '{{ new }}'.",
            "Substitute '{{ new }}' for every '{{ old }}' in the text.",
            "Rewrite the text with '{{ old }}' replaced by '{{ new }}' everywhere.",
            "Wherever the letter {{ old }} appears, write {{ new }} instead.",
            "Perform the substitution {{ old }} -> {{ new }} on the text.",
            "Turn every {{ old }} into a {{ new }}.",
            "Apply this rule to the text: '{{ old }}' becomes '{{ new }}'.",
            "What does the text become if each '{{ old }}' is replaced with '{{ new }}'?",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "acronym",
        _acronym,
        grid(style=list(ACRONYM_STYLES), size={"three": (3, 3), "four": (4, 4), "five": (5, 5), "mixed": (3, 7)}),
        (
            "Form an acronym from the first letters of the words, {{ style }}.",
            "Take the first letter of each word and write them together, {{ style }}.",
            "Abbreviate the phrase to its initials, {{ style }}.",
            "What are the initials of these words? Write them {{ style }}.",
            "Make an abbreviation out of the words' first letters, {{ style }}.",
            "Write the initial letter of every word, {{ style }}.",
            "Collect the leading letter of each word to build an acronym, {{ style }}.",
            "Give the acronym for this phrase, {{ style }}.",
            "Shorten the phrase to the first letter of each word ({{ style }}).",
            "Spell out the first letters of the words in order, {{ style }}.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "caesar_shift",
        _caesar,
        grid(shift=range(1, 26), decode={"encode": False, "decode": True}),
        (
            "Shift every letter {{ direction }} by {{ shift }} places in the alphabet, wrapping around.",
            "Apply a Caesar shift of {{ shift }} ({{ direction }}) to the text.",
            "Move each letter {{ shift }} positions {{ direction }} in the alphabet; the alphabet wraps around.",
            "Rotate each letter {{ shift }} steps {{ direction }} through the alphabet.",
            "Use a Caesar cipher: every letter moves {{ shift }} places {{ direction }}.",
            "Transform the text by shifting letters {{ direction }} {{ shift }} places (spaces stay).",
            "Rewrite the text with each letter replaced by the one {{ shift }} places {{ direction }} in the alphabet.",
            "Caesar-shift the following text {{ direction }} by {{ shift }}.",
            "Letter rotation, {{ shift }} places {{ direction }}: what does the text become?",
            "Replace every letter by the letter {{ shift }} positions {{ direction }} of it, wrapping around the alphabet.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "sort_letters",
        _sort_letters,
        grid(pool=list(POOLS), descending={"asc": False, "desc": True}),
        (
            "Sort the letters of each word into {{ order }}.",
            "Rearrange the letters inside every word so they are in {{ order }}.",
            "For each word, write its letters in {{ order }}.",
            "Put the characters of each word in {{ order }}, keeping the words apart.",
            "Reorder the letters within each word by {{ order }}.",
            "Take every word and sort its letters ({{ order }}).",
            "Write each word with its letters arranged in {{ order }}.",
            "Sort the characters of every word in {{ order }}; keep the word order.",
            "What are these words with their letters in {{ order }}?",
            "Give each word with its letters sorted into {{ order }}.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "join_words",
        _join_words,
        grid(sep=list(SEPARATORS), size={"short": (2, 4), "long": (5, 8)}),
        (
            "Join the words with {{ separator }}.",
            "Connect the words using {{ separator }} between each pair.",
            "Put {{ separator }} between the words instead of spaces.",
            "Rewrite the words as one string, separated by {{ separator }}.",
            "Replace the spaces between the words with {{ separator }}.",
            "Glue these words together with {{ separator }}.",
            "Combine the words into a single line joined by {{ separator }}.",
            "Link every word to the next with {{ separator }}.",
            "Use {{ separator }} to join the words below.",
            "Write the words in order, with {{ separator }} where the spaces were.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "repeat_words",
        _repeat_words,
        grid(pool=list(POOLS), times={"twice": 2, "thrice": 3}),
        (
            "Repeat each word {{ times }}.",
            "Write every word {{ times }} in a row.",
            "Say each word {{ times }}, keeping the order.",
            "Duplicate the words so that each appears {{ times }} consecutively.",
            "Echo every word {{ times }}.",
            "Rewrite the text with each word written {{ times }}.",
            "Copy each word {{ times }} before moving on to the next one.",
            "Expand the text by writing every word {{ times }}.",
            "Output each word of the input {{ times }}, separated by spaces.",
            "What does the text look like if every word is repeated {{ times }}?",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "strip_letters",
        _strip_letters,
        grid(pool=list(POOLS), kind=["vowels", "consonants"]),
        (
            "Remove all the {{ kind }} from the text.",
            "Delete every one of the {{ kind }} and keep the other letters.",
            "Write the text without its {{ kind }}.",
            "Strip the {{ kind }} out of each word.",
            "What remains once the {{ kind }} are taken out?",
            "Rewrite each word with its {{ kind }} left out.",
            "Drop the {{ kind }} (a, e, i, o and u are the vowels; every other letter is a consonant).",
            "Take out all {{ kind }}; keep one space between the words.",
            "Erase the {{ kind }} from the following words.",
            "Filter out the {{ kind }}, letter by letter.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "dedupe_words",
        _dedupe_words,
        grid(pool=list(POOLS), extra={"few": 2, "many": 4}),
        (
            "Remove the repeated words, keeping the first occurrence of each.",
            "Delete duplicate words from the list; keep the original order.",
            "Write each word only once, in the order it first appears.",
            "Drop every word that already appeared earlier.",
            "Deduplicate the words while preserving their first-appearance order.",
            "List the distinct words in the order they first show up.",
            "Keep only the first copy of every word.",
            "Rewrite without repetitions: each word once, in order of first appearance.",
            "Which words appear in the text? Give each once, in order of first appearance.",
            "Cross out the words that repeat an earlier word and write what remains.",
        ),
        TEXT_INPUTS,
    ),
    Family(
        "insert_word",
        _insert_word,
        grid(pool=list(POOLS), position=["first", "second", "third", "fourth"]),
        (
            "Insert the new word right after the {{ position }} word of the text.",
            "Put the given word after the {{ position }} word.",
            "Add the new word to the text so that it follows the {{ position }} word.",
            "Place the extra word directly after the {{ position }} word and write the result.",
            "Rewrite the text with the new word inserted after its {{ position }} word.",
            "Slot the given word in after the {{ position }} word.",
            "Where the {{ position }} word ends, insert the new word.",
            "Write the text again, adding the new word after the {{ position }} word.",
            "Insert the word into the text, after word number {{ position }}.",
            "What does the text become when the new word goes after the {{ position }} word?",
        ),
        ("Text: {{ text }}\nNew word: {{ word }}", "{{ text }}\nInsert: {{ word }}", "Sentence: {{ text }}\nWord to add: {{ word }}"),
    ),
    Family(
        "swap_words",
        _swap_words,
        grid(pool=list(POOLS), pair=SWAPS),
        (
            "Swap the {{ first }} and the {{ second }} word.",
            "Exchange the positions of the {{ first }} and {{ second }} words.",
            "Switch the {{ first }} word with the {{ second }} word.",
            "Trade places between the {{ first }} word and the {{ second }} word.",
            "Rewrite the text with its {{ first }} and {{ second }} words swapped.",
            "Put the {{ second }} word where the {{ first }} word is, and the other way round.",
            "Interchange the {{ first }} and {{ second }} words of the text.",
            "What is the text after swapping the {{ first }} and {{ second }} words?",
            "Swap two words: the {{ first }} and the {{ second }}.",
            "Move the {{ first }} word to the {{ second }} word's place and vice versa.",
        ),
        TEXT_INPUTS,
    ),
)
