"""Formats (FLAN v2 names): how one templated record becomes an (inputs, targets) pair.

=========  ==========================================================
format     what the example looks like
=========  ==========================================================
zs_noopt   instruction + input                      -> answer
zs_opt     instruction + input + options block      -> answer
fs_noopt   instruction + k solved exemplars + input -> answer
fs_opt     the same, every block with its options   -> answer
zs_cot     instruction + input + "think step by step" -> rationale + answer
fs_cot     instruction + k exemplars with rationales + input -> rationale + answer
zs_inv     an *inverted* template (the answer given, the input asked for)
fs_inv     the same with k exemplars
=========  ==========================================================

Everything random here (few-shot delimiters, the options header, the CoT
trigger) is drawn from the caller's ``rng``, so a rendering is a pure function
of it. This module knows nothing of tasks; :meth:`flanforge.mixtures.task.Task.render`
drives it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from flanforge.errors import did_you_mean


@dataclass(frozen=True)
class Format:
    name: str
    few_shot: bool = False
    options: bool = False
    cot: bool = False
    inverted: bool = False

    @property
    def kind(self) -> str:
        """``zero_shot``, ``few_shot``, ``cot`` or ``inverted``: the group used for per-format logging."""
        if self.cot:
            return "cot"
        if self.inverted:
            return "inverted"
        return "few_shot" if self.few_shot else "zero_shot"

    @property
    def zero_shot(self) -> "Format":
        """The zero-shot counterpart (what a few-shot example becomes when no exemplar fits the budget)."""
        return FORMATS["zs" + self.name[2:]]


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("zs_opt", options=True),
        Format("zs_noopt"),
        Format("fs_opt", few_shot=True, options=True),
        Format("fs_noopt", few_shot=True),
        Format("zs_cot", cot=True),
        Format("fs_cot", few_shot=True, cot=True),
        Format("zs_inv", inverted=True),
        Format("fs_inv", few_shot=True, inverted=True),
    )
}
FORMAT_KINDS = ("zero_shot", "few_shot", "cot", "inverted")


def get_format(name: str) -> Format:
    """The format called ``name``; a ValueError naming the closest names otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        hint = did_you_mean(name, FORMATS, n=2, cutoff=0.3)
        raise ValueError(f"unknown format '{name}' (formats: {', '.join(FORMATS)}){hint}") from None


def format_kind(name: str) -> str:
    """``zero_shot`` | ``few_shot`` | ``cot`` | ``inverted`` for a format name (per-format logging)."""
    return get_format(name).kind


@dataclass(frozen=True)
class FewShotPattern:
    """How exemplars are laid out: ``{inputs_prefix}x{x_y_delimiter}{targets_prefix}y``, joined by ``example_separator``."""

    inputs_prefix: str
    targets_prefix: str
    x_y_delimiter: str
    example_separator: str


# FLAN draws one of several delimiter sets per example so the model does not
# over-fit one layout.
FEW_SHOT_PATTERNS = (
    FewShotPattern("", "", "\n", "\n\n"),
    FewShotPattern("", "", "\n\n", "\n\n\n"),
    FewShotPattern("Q: ", "A: ", "\n", "\n\n"),
    FewShotPattern("Question: ", "Answer: ", "\n", "\n\n"),
    FewShotPattern("Input: ", "Output: ", "\n", "\n\n"),
    FewShotPattern("Problem: ", "Solution: ", "\n", "\n\n"),
    FewShotPattern("", "Answer: ", "\n", "\n\n\n"),
    FewShotPattern("Example: ", "Response: ", "\n", "\n\n"),
)
OPTIONS_HEADERS = (
    "OPTIONS:",
    "Options:",
    "Choose from:",
    "Pick your answer from:",
    "Possible answers:",
    "Select from the following.",
)
COT_TRIGGERS = (
    "Let's think step by step.",
    "Think it through step by step, then answer.",
    "Explain your reasoning first, then give the answer.",
    "Work it out step by step.",
    "Reason step by step before you answer.",
)
COT_ANSWERS = ("So the answer is {}", "Therefore, the answer is {}", "The answer is {}", "So, the final answer is {}")
COT_ANSWER = re.compile(r"answer is:?[ \t]*", re.IGNORECASE)
"""A chain of thought states its answer after the last "(So the) answer is", up to the end of that line."""


def extract_answer(generation: str, pattern: re.Pattern[str] | None = COT_ANSWER) -> str | None:
    """The answer a generation states: the rest of the line after the last match of ``pattern`` (CoT),
    else (no pattern) the text itself.

    None when there is nothing to score (an empty generation, or a CoT without the answer phrase).
    """
    text = generation.strip()
    if pattern is not None:
        matches = list(pattern.finditer(text))
        if not matches:
            return None
        text = text[matches[-1].end():].split("\n", 1)[0].strip()
        text = text[:-1].strip() if text.endswith(".") else text
    return text or None


class Parts(NamedTuple):
    """A record rendered through one template, before a format lays it out."""

    instruction: str
    input: str
    target: str
    options: Sequence[str] = ()
    rationale: str = ""


@dataclass(frozen=True)
class Style:
    """The random choices one example makes once and applies to every block."""

    pattern: FewShotPattern
    options_header: str
    cot_trigger: str
    cot_answer: str

    @staticmethod
    def draw(rng: random.Random) -> "Style":
        return Style(
            rng.choice(FEW_SHOT_PATTERNS), rng.choice(OPTIONS_HEADERS), rng.choice(COT_TRIGGERS), rng.choice(COT_ANSWERS)
        )


def block(parts: Parts, fmt: Format, style: Style) -> tuple[str, str]:
    """One (input, target) pair without the instruction: the options block and the CoT target applied."""
    x, y = parts.input, parts.target
    if fmt.options:
        x = f"{x}\n\n{style.options_header}\n" + "\n".join(f"- {o}" for o in parts.options)
    if fmt.cot:
        y = f"{parts.rationale} {style.cot_answer.format(y)}"
        if y[-1] not in ".!?":
            y += "."
    return x, y


def layout(
    instruction: str,
    query: tuple[str, str],
    shots: Sequence[tuple[str, str]],
    fmt: Format,
    style: Style,
    instruction_first: bool,
) -> tuple[str, str]:
    """The example's (inputs, targets): instruction once, before or after the exemplars and the query."""
    x, y = query
    if shots:
        p = style.pattern
        solved = [f"{p.inputs_prefix}{sx}{p.x_y_delimiter}{p.targets_prefix}{sy}" for sx, sy in shots]
        last = f"{p.inputs_prefix}{x}{p.x_y_delimiter}{p.targets_prefix}".rstrip()
        x = p.example_separator.join([*solved, last])
    pieces = [instruction, x] if instruction_first else [x, instruction]
    inputs = "\n\n".join(s for s in pieces if s)
    if fmt.cot and not fmt.few_shot:
        inputs = f"{inputs}\n\n{style.cot_trigger}"
    return inputs, y


def compose(
    instruction: str,
    query: tuple[str, str],
    shots: Sequence[tuple[str, str]],
    fmt: Format,
    style: Style,
    instruction_first: bool,
    budget: int,
    count_tokens: Callable[[str], int],
) -> tuple[Format, str, str]:
    """``(format, inputs, targets)`` with as many of ``shots`` as fit ``budget`` tokens (inputs + targets).

    Whole exemplars are dropped from the end, none is ever cut. When not even
    one fits, the example is laid out in the zero-shot counterpart format.
    """
    for k in range(len(shots), 0, -1):
        inputs, targets = layout(instruction, query, shots[:k], fmt, style, instruction_first)
        if count_tokens(inputs) + count_tokens(targets) <= budget:
            return fmt, inputs, targets
    fmt = fmt.zero_shot
    return (fmt, *layout(instruction, query, [], fmt, style, instruction_first))


def whitespace_tokens(text: str) -> int:
    """The fallback token counter: whitespace-separated pieces."""
    return len(text.split())
