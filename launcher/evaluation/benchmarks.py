"""Prompts of the held-out benchmarks, read by ``mixtures/sources/benchmarks.py``: BIG-Bench Hard and GSM8K
(MMLU's: ``mmlu.py``; every suite read from a directory is built by :func:`build`), and MMLU's chain of thought.

``bbh`` is 3-shot (its prompt file's exemplars; ``--shots`` takes fewer) answer-only (each exemplar's answer without its rationale),
``bbh_cot`` 3-shot chain of thought with the answer after "So the answer is",
as Flan 2022 reports them; both exact match, one cluster per suite. GSM8K is
``shots``-shot chain of thought (solved training problems), or a zero-shot
"Let's think step by step.". ``mmlu_cot`` prompts each subject with Flan's
chain-of-thought exemplars from a file the user gives (``--cot-prompts``,
lm-evaluation-harness's ``flan_cot_fewshot`` layout) and the question as
``Q: ...\n(A) ... (B) ... (C) ... (D) ...\nA: Let's think step by step.``;
the answer after "answer is" is matched exactly (normalised) to ``(X)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from flanforge.launcher.evaluation import mmlu
from flanforge.launcher.evaluation.tasks import EvalExample, EvalTask, Suite
from flanforge.mixtures.formats import COT_ANSWER
from flanforge.mixtures.task import TaskError
from flanforge.mixtures.sources.base import BadRecords
from flanforge.mixtures.sources.benchmarks import read_bbh, read_gsm8k
from flanforge.mixtures.sources.mmlu import LETTERS, MMLURow, read_cot_prompts, read_mmlu
from flanforge.mixtures.task import TaskError

STOPS = ("\n\nQ:",)
COT_MAX_NEW_TOKENS = 256
COT_TRIGGER = "Let's think step by step."
GSM8K_SHOTS = 3
SUITES = ("bbh", "bbh_cot", "gsm8k", "mmlu", "mmlu_cot")
"""Suites read from a directory: ``NAME:DIR``."""


def build(name: str, path: str, *, split: str | None, shots: int | None, max_examples: int | None,
          count_tokens: Callable[[str], int] | None, encoding: str | None = None, policy: str = "error",
          cot_prompts: str | None = None) -> Suite:
    """Benchmark suite ``name`` (one of :data:`SUITES`) read from ``path`` (text in ``encoding``, default
    UTF-8; a bad example an error, or under ``policy`` skip, skipped and counted per task); ``split`` matters
    to MMLU only (default its test split), BBH and GSM8K have one test set; ``cot_prompts``: ``mmlu_cot``'s
    exemplars."""
    if name.startswith("mmlu"):
        split = split or mmlu.DEFAULT_SPLIT
        tasks = (mmlu_cot_tasks(Path(path), split, cot_prompts, max_examples, encoding, policy)
                 if name == "mmlu_cot" else
                 mmlu.mmlu_tasks(Path(path), split=split, shots=shots, max_examples=max_examples, encoding=encoding,
                                 policy=policy))
        return Suite(name, tasks, weighted=True, split=split)
    if name == "gsm8k":
        return Suite(name, [gsm8k_task(Path(path), GSM8K_SHOTS if shots is None else shots, max_examples, encoding,
                                       policy)])
    return Suite(name, bbh_tasks(Path(path), cot=name == "bbh_cot", shots=shots, max_examples=max_examples,
                                 count_tokens=count_tokens, encoding=encoding, policy=policy))


def bbh_tasks(root: Path, *, cot: bool, shots: int | None = None, max_examples: int | None = None,
              count_tokens: Callable[[str], int] | None = None, encoding: str | None = None,
              policy: str = "error") -> list[EvalTask]:
    """One task per BBH task file, with its prompt file's exemplars (all of them, or the first ``shots``;
    more than the file has is an error naming the task and the maximum)."""
    count = count_tokens or (lambda text: 2 * len(text.split()))
    tasks = []
    for bbh in read_bbh(root, max_examples, encoding, policy):
        if shots is not None and shots > len(bbh.shots):
            raise TaskError(f"BBH task '{bbh.name}': --shots {shots} but its prompt file has {len(bbh.shots)} "
                            f"exemplars (at most --shots {len(bbh.shots)})")
        exemplars = bbh.shots[:shots]
        if cot:
            head = "\n\n".join([bbh.description, *(f"Q: {q}\nA: {rationale}" for q, rationale, _ in exemplars)])
        else:
            head = "\n\n".join([bbh.description, *(f"Q: {q}\nA: {answer}" for q, _, answer in exemplars)])
        examples = [EvalExample(f"{head}\n\nQ: {question}\nA:{f' {COT_TRIGGER}' if cot else ''}".strip(), (target,))
                    for question, target in bbh.rows]
        longest = max(count(e.references[0]) for e in examples)
        tasks.append(EvalTask(bbh.name, "bbh", "exact_match", "fs_cot" if cot else "fs_noopt", examples,
                              max_new_tokens=COT_MAX_NEW_TOKENS if cot else int(1.25 * longest) + 8, stops=STOPS,
                              answer_pattern=COT_ANSWER if cot else None, bad_records=bbh.bad_records))
    return tasks


def gsm8k_task(root: Path, shots: int, max_examples: int | None = None, encoding: str | None = None,
               policy: str = "error") -> EvalTask:
    bad = BadRecords(policy)
    rows, solved = read_gsm8k(root, shots, max_examples, encoding, bad)
    if shots:
        head = "\n\n".join(f"Q: {q}\nA: {r} So the answer is {a}." for q, r, a in solved) + "\n\n"
        examples = [EvalExample(f"{head}Q: {q}\nA:", (a,)) for q, _, a in rows]
    else:
        examples = [EvalExample(f"Q: {q}\nA: {COT_TRIGGER}", (a,)) for q, _, a in rows]
    return EvalTask("gsm8k", "gsm8k", "exact_match", "fs_cot" if shots else "zs_cot", examples,
                    max_new_tokens=COT_MAX_NEW_TOKENS, stops=STOPS, answer_pattern=COT_ANSWER, bad_records=bad.count)


def mmlu_cot_tasks(root: Path, split: str, cot_prompts: str | None, max_examples: int | None,
                   encoding: str | None = None, policy: str = "error") -> list[EvalTask]:
    """One chain-of-thought task per MMLU subject of ``root``, its exemplars the subject's entry of ``cot_prompts``."""
    if cot_prompts is None:
        raise TaskError("suite 'mmlu_cot' needs Flan's chain-of-thought exemplars: --cot-prompts FILE (a JSON "
                        "object subject -> prompt, lm-evaluation-harness's mmlu/flan_cot_fewshot/_cot_prompts.json)")
    prompts = read_cot_prompts(Path(cot_prompts))
    tasks = []
    for subject in read_mmlu(root, split, 0, max_examples, known=tuple(mmlu.CATEGORY), encoding=encoding,
                             policy=policy):
        if subject.name not in prompts:
            raise TaskError(f"--cot-prompts {cot_prompts}: no exemplars for MMLU subject '{subject.name}'")
        examples = [EvalExample(f"{prompts[subject.name].rstrip()}\n\n{cot_question(row)}", (f"({row.answer})",))
                    for row in subject.rows]
        tasks.append(EvalTask(subject.name, mmlu.CATEGORY[subject.name], "exact_match", "fs_cot", examples,
                              max_new_tokens=COT_MAX_NEW_TOKENS, stops=STOPS, answer_pattern=COT_ANSWER,
                              bad_records=subject.bad_records))
    return tasks


def cot_question(row: MMLURow) -> str:
    """An MMLU question as Flan's chain-of-thought prompts write it."""
    options = " ".join(f"({letter}) {choice}" for letter, choice in zip(LETTERS, row.choices))
    return f"Q: {row.question.strip()}\n{options}\nA: {COT_TRIGGER}"
