"""Held-out benchmarks read from their repositories' layouts: BIG-Bench Hard and GSM8K.

Evaluation only: nothing here is a training source, and these files carry
BIG-bench's canary string precisely so that they never end up in training data.

BBH (``suzgunmirac/BIG-Bench-Hard``)::

    DIR/bbh/<task>.json          {"examples": [{"input": ..., "target": ...}, ...]}
    DIR/cot-prompts/<task>.txt   canary line, "-----", description, three
                                 "Q: ...\\nA: Let's think step by step. ... So the answer is X." exemplars

``bbh`` is 3-shot answer-only (each exemplar's answer without its rationale),
``bbh_cot`` 3-shot chain of thought with the answer after "So the answer is",
as Flan 2022 reports them; both exact match, one cluster per suite.

GSM8K (``openai/grade-school-math``): ``DIR/test.jsonl`` (or the file itself)
with ``question`` and ``answer`` (a rationale ending in ``#### <number>``);
``shots`` solved problems from ``train.jsonl`` beside it (``<<...>>``
calculator notes removed), or a zero-shot "Let's think step by step.".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from flanforge.mixtures.evalsets import EvalExample, EvalTask
from flanforge.mixtures.metrics import COT_ANSWER, extract_answer
from flanforge.mixtures.task import TaskError

STOPS = ("\n\nQ:",)
COT_MAX_NEW_TOKENS = 256
COT_TRIGGER = "Let's think step by step."
GSM8K_SHOTS = 3
_CALCULATOR = re.compile(r"<<[^>]*>>")


def build(name: str, path: str, *, shots: int | None, max_examples: int | None,
          count_tokens: Callable[[str], int] | None) -> list[EvalTask]:
    """The tasks of benchmark suite ``name`` (``bbh``, ``bbh_cot`` or ``gsm8k``) read from ``path``."""
    if name == "gsm8k":
        return [gsm8k_task(Path(path), GSM8K_SHOTS if shots is None else shots, max_examples)]
    return bbh_tasks(Path(path), cot=name == "bbh_cot", max_examples=max_examples, count_tokens=count_tokens)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TaskError(f"{path}: not valid JSON: {err}") from None


def bbh_tasks(root: Path, *, cot: bool, max_examples: int | None = None,
              count_tokens: Callable[[str], int] | None = None) -> list[EvalTask]:
    files = sorted((root / "bbh").glob("*.json"))
    if not files:
        raise TaskError(f"{root}: no BBH tasks (expected bbh/<task>.json and cot-prompts/<task>.txt)")
    count = count_tokens or (lambda text: 2 * len(text.split()))
    tasks = []
    for file in files:
        prompt_file = root / "cot-prompts" / f"{file.stem}.txt"
        if not prompt_file.is_file():
            raise TaskError(f"BBH task '{file.stem}': its prompt {prompt_file} is missing")
        description, shots = parse_cot_prompt(prompt_file)
        data = _read_json(file)
        rows = data.get("examples") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            raise TaskError(f"{file}: expected {{\"examples\": [{{\"input\": ..., \"target\": ...}}, ...]}}")
        rows = rows[:max_examples] if max_examples is not None else rows
        if cot:
            head = "\n\n".join([description, *(f"Q: {q}\nA: {rationale}" for q, rationale, _ in shots)])
        else:
            head = "\n\n".join([description, *(f"Q: {q}\nA: {answer}" for q, _, answer in shots)])
        examples = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not str(row.get("input", "")).strip() or not str(row.get("target", "")).strip():
                raise TaskError(f"{file}: example {i} needs a non-empty 'input' and 'target'")
            query = f"Q: {row['input']}\nA:" + (f" {COT_TRIGGER}" if cot else "")
            examples.append(EvalExample(f"{head}\n\n{query}".strip(), (str(row["target"]),)))
        longest = max(count(e.references[0]) for e in examples)
        tasks.append(EvalTask(file.stem, "bbh", "exact_match", "fs_cot" if cot else "fs_noopt", examples,
                              max_new_tokens=COT_MAX_NEW_TOKENS if cot else int(1.25 * longest) + 8, stops=STOPS,
                              answer_pattern=COT_ANSWER if cot else None))
    return tasks


def parse_cot_prompt(path: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """``(description, [(question, rationale, answer), ...])`` of a BBH ``cot-prompts`` file."""
    text = path.read_text(encoding="utf-8")
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


def _gsm8k_rows(path: Path) -> list[tuple[str, str, str]]:
    """``(question, rationale, final answer)`` per line of a GSM8K JSONL file."""
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rationale, final = row["answer"].split("####")
            rows.append((row["question"].strip(), _CALCULATOR.sub("", rationale).strip(), final.strip().replace(",", "")))
        except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as err:
            raise TaskError(f"{path}:{line_no}: not a GSM8K record (question, answer ending '#### N'): "
                            f"{type(err).__name__}: {err}") from None
    return rows


def gsm8k_task(root: Path, shots: int, max_examples: int | None = None) -> EvalTask:
    test = root if root.is_file() else root / "test.jsonl"
    if not test.is_file():
        raise TaskError(f"GSM8K: {test} does not exist (expected DIR/test.jsonl)")
    rows = _gsm8k_rows(test)[:max_examples] if max_examples is not None else _gsm8k_rows(test)
    if shots:
        train = test.with_name("train.jsonl")
        if not train.is_file():
            raise TaskError(f"GSM8K: {shots}-shot prompts need {train} (or --shots 0)")
        solved = _gsm8k_rows(train)[:shots]
        head = "\n\n".join(f"Q: {q}\nA: {r} So the answer is {a}." for q, r, a in solved) + "\n\n"
        examples = [EvalExample(f"{head}Q: {q}\nA:", (a,)) for q, _, a in rows]
    else:
        examples = [EvalExample(f"Q: {q}\nA: {COT_TRIGGER}", (a,)) for q, _, a in rows]
    return EvalTask("gsm8k", "gsm8k", "exact_match", "fs_cot" if shots else "zs_cot", examples,
                    max_new_tokens=COT_MAX_NEW_TOKENS, stops=STOPS, answer_pattern=COT_ANSWER)
