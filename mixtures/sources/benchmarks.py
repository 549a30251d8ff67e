"""Held-out benchmarks read from their repositories' layouts: BIG-Bench Hard and GSM8K.

Evaluation only: nothing here is a training source, and these files carry
BIG-bench's canary string precisely so that they never end up in training data.

BBH (``suzgunmirac/BIG-Bench-Hard``)::

    DIR/bbh/<task>.json          {"examples": [{"input": ..., "target": ...}, ...]}
    DIR/cot-prompts/<task>.txt   canary line, "-----", description, three
                                 "Q: ...\\nA: Let's think step by step. ... So the answer is X." exemplars

The prompts built from them (answer-only and chain-of-thought BBH, GSM8K) are
evaluation's: ``launcher/evaluation/benchmarks.py``.

GSM8K (``openai/grade-school-math``): ``DIR/test.jsonl`` (or the file itself)
with ``question`` and ``answer`` (a rationale ending in ``#### <number>``), and
solved problems for few-shot prompts from ``train.jsonl`` beside it (``<<...>>``
calculator notes removed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from flanforge.mixtures.formats import extract_answer
from flanforge.mixtures.sources.base import BadRecords
from flanforge.mixtures.task import TaskError
from flanforge.text import read_text

_CALCULATOR = re.compile(r"<<[^>]*>>")


def _read_json(path: Path, encoding: str | None) -> Any:
    try:
        return json.loads(read_text(path, encoding))
    except json.JSONDecodeError as err:
        raise TaskError(f"{path}: not valid JSON: {err}") from None
    except RecursionError:
        raise TaskError(f"{path}: JSON nested too deeply") from None


class BBHTask(NamedTuple):
    """One BIG-Bench Hard task as its files give it."""

    name: str
    description: str
    shots: list[tuple[str, str, str]]
    """``(question, rationale, answer)`` of each exemplar of its ``cot-prompts`` file."""
    rows: list[tuple[str, str]]
    """``(input, target)`` of each example."""
    bad_records: int
    """Examples skipped as bad (``on_bad_record: skip``)."""


def read_bbh(root: Path, max_examples: int | None = None, encoding: str | None = None,
             policy: str = "error") -> list[BBHTask]:
    """Every task of a BBH checkout (``DIR/bbh/*.json`` with ``DIR/cot-prompts/*.txt``), sorted by name; a bad
    example is an error or (``policy`` skip) skipped and counted."""
    files = sorted((root / "bbh").glob("*.json"))
    if not files:
        raise TaskError(f"{root}: no BBH tasks (expected bbh/<task>.json and cot-prompts/<task>.txt)")
    tasks = []
    for file in files:
        prompt_file = root / "cot-prompts" / f"{file.stem}.txt"
        if not prompt_file.is_file():
            raise TaskError(f"BBH task '{file.stem}': its prompt {prompt_file} is missing")
        description, shots = parse_cot_prompt(prompt_file, encoding)
        data = _read_json(file, encoding)
        rows = data.get("examples") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            raise TaskError(f"{file}: expected {{\"examples\": [{{\"input\": ..., \"target\": ...}}, ...]}}")
        pairs, bad = [], BadRecords(policy)
        for i, row in enumerate(rows[:max_examples] if max_examples is not None else rows):
            if not isinstance(row, dict) or not str(row.get("input", "")).strip() or not str(row.get("target", "")).strip():
                bad(f"{file}: example {i} needs a non-empty 'input' and 'target'")
            else:
                pairs.append((str(row["input"]), str(row["target"])))
        tasks.append(BBHTask(file.stem, description, shots, pairs, bad.count))
    return tasks


def parse_cot_prompt(path: Path, encoding: str | None = None) -> tuple[str, list[tuple[str, str, str]]]:
    """``(description, [(question, rationale, answer), ...])`` of a BBH ``cot-prompts`` file."""
    text = read_text(path, encoding)
    body = text.split("\n-----\n", 1)[1] if "\n-----\n" in text else text
    blocks = re.split(r"\n\n(?=Q: )", body.strip())
    description = "" if blocks[0].startswith("Q: ") else blocks.pop(0).strip()
    shots = []
    for block in blocks:
        question, sep, rationale = block.partition("\nA: ")
        answer = extract_answer(rationale) if sep else None
        if answer is None:
            raise TaskError(f"{path}: an exemplar without 'A: ... So the answer is X.': {block[:60]!r}")
        shots.append((question[len("Q: "):].strip(), rationale.strip(), answer))
    if not shots:
        raise TaskError(f"{path}: no 'Q: ... A: ...' exemplars")
    return description, shots


def _gsm8k_rows(path: Path, encoding: str | None, bad: BadRecords) -> list[tuple[str, str, str]]:
    """``(question, rationale, final answer)`` per good line of a GSM8K JSONL file (a bad one goes to ``bad``);
    none is an error."""
    rows = []
    for line_no, line in enumerate(read_text(path, encoding).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rationale, final = row["answer"].split("####")
            rows.append((row["question"].strip(), _CALCULATOR.sub("", rationale).strip(), final.strip().replace(",", "")))
        except (json.JSONDecodeError, KeyError, ValueError, AttributeError, TypeError, RecursionError) as err:
            bad(f"{path}:{line_no}: not a GSM8K record (question, answer ending '#### N'): {type(err).__name__}: {err}")
    if not rows:
        raise TaskError(f"GSM8K: {path} holds no problems")
    return rows


def read_gsm8k(root: Path, shots: int, max_examples: int | None = None, encoding: str | None = None,
               bad: BadRecords | None = None) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """GSM8K's test problems and ``shots`` solved training problems, each ``(question, rationale, answer)``;
    fewer solved problems than ``shots`` is an error naming the maximum. A bad line is an error, or skipped
    and counted in ``bad`` (its policy)."""
    bad = bad or BadRecords()
    test = root if root.is_file() else root / "test.jsonl"
    if not test.is_file():
        raise TaskError(f"GSM8K: {test} does not exist (expected DIR/test.jsonl)")
    rows = _gsm8k_rows(test, encoding, bad)[:max_examples]
    if not shots:
        return rows, []
    train = test.with_name("train.jsonl")
    if not train.is_file():
        raise TaskError(f"GSM8K: {shots}-shot prompts need {train} (or --shots 0)")
    solved = _gsm8k_rows(train, encoding, bad)
    if len(solved) < shots:
        raise TaskError(f"GSM8K: --shots {shots} but {train} has {len(solved)} solved problems (at most "
                        f"--shots {len(solved)})")
    return rows, solved[:shots]
