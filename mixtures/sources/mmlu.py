"""MMLU read from the original release's layout (``hendrycks/test``), the layout users hold it in.

Evaluation only: nothing here is a training source. ::

    DIR/data/dev/<subject>_dev.csv     few-shot exemplars (5 per subject)
    DIR/data/val/<subject>_val.csv     where present
    DIR/data/test/<subject>_test.csv

No header; a row is ``question, A, B, C, D, answer`` with the answer a letter
A-D. Every cell is text exactly as written (``csv`` module, no type guessing:
a literal ``None`` stays the string ``None``; line breaks inside quoted cells
are kept). The prompts built from them are evaluation's:
``launcher/evaluation/mmlu.py``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import NamedTuple

from flanforge.errors import did_you_mean
from flanforge.mixtures.sources.base import BadRecords
from flanforge.mixtures.task import TaskError
from flanforge.text import read_text

LETTERS = ("A", "B", "C", "D")
SPLIT_DIRS = {"test": "test", "validation": "val", "dev": "dev"}
"""A split's name -> its folder under ``DIR/data``."""


class MMLURow(NamedTuple):
    """One question as its file gives it."""

    question: str
    choices: tuple[str, str, str, str]
    answer: str
    """The correct letter, A-D."""


class MMLUSubject(NamedTuple):
    name: str
    exemplars: list[MMLURow]
    """The first ``shots`` rows of its dev file, in file order."""
    rows: list[MMLURow]
    bad_records: int
    """Rows skipped as bad (``on_bad_record: skip``)."""


def read_rows(path: Path, encoding: str | None = None, bad: BadRecords | None = None) -> list[MMLURow]:
    """Every good row of one subject file; a wrong column count or answer letter names the file and line (an
    error, or skipped and counted in ``bad`` under its policy)."""
    rows, bad = [], bad or BadRecords()
    with io.StringIO(read_text(path, encoding), newline="") as fh:  # newline="": quoted line breaks stay in their cell
        reader = csv.reader(fh)
        line = 1
        for cells in reader:
            where, line = f"{path}:{line}", reader.line_num + 1  # a record may span several lines
            if len(cells) != 6:
                bad(f"{where}: expected 6 columns (question, A, B, C, D, answer), found {len(cells)}")
            elif cells[5] not in LETTERS:
                bad(f"{where}: the answer {cells[5]!r} is not one of A, B, C, D")
            else:
                rows.append(MMLURow(cells[0], (cells[1], cells[2], cells[3], cells[4]), cells[5]))
    return rows


def read_mmlu(root: Path, split: str, shots: int, max_examples: int | None = None,
              known: tuple[str, ...] = (), encoding: str | None = None, policy: str = "error") -> list[MMLUSubject]:
    """Every subject of ``root``'s ``split`` (sorted by name), with its first ``shots`` dev rows; a bad row is
    an error, or (``policy`` skip) skipped and counted per subject.

    ``known``: the valid subject names (an unknown file name is an error naming the closest one).
    Nothing is read short: fewer dev rows than ``shots`` is an error naming the subject and the count.
    """
    folder = root / "data" / SPLIT_DIRS.get(split, split)
    if not folder.is_dir():
        found = sorted(p.name for p in (root / "data").iterdir()) if (root / "data").is_dir() else \
            sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        where = root / "data" if (root / "data").is_dir() else root
        raise TaskError(f"MMLU: no {folder} (split '{split}'); {where} holds: {', '.join(found) or 'nothing'}")
    suffix = f"_{folder.name}.csv"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    if not files:
        raise TaskError(f"MMLU: {folder} has no <subject>{suffix} files")
    subjects = []
    for file in files:
        name = file.name[: -len(suffix)]
        if known and name not in known:
            raise TaskError(f"{file}: '{name}' is not an MMLU subject{did_you_mean(name, known)}")
        exemplars: list[MMLURow] = []
        bad = BadRecords(policy)
        if shots:
            dev = root / "data" / "dev" / f"{name}_dev.csv"
            if not dev.is_file():
                raise TaskError(f"MMLU subject '{name}': {shots}-shot prompts need {dev} (or --shots 0)")
            exemplars = read_rows(dev, encoding, bad)
            if len(exemplars) < shots:
                raise TaskError(f"MMLU subject '{name}': --shots {shots} asks for {shots} exemplars but {dev} "
                                f"has {len(exemplars)} (at most --shots {len(exemplars)})")
        rows = read_rows(file, encoding, bad)
        if not rows:
            raise TaskError(f"{file}: no questions")
        subjects.append(MMLUSubject(name, exemplars[:shots], rows[:max_examples], bad.count))
    return subjects


def read_cot_prompts(path: Path) -> dict[str, str]:
    """Flan's chain-of-thought exemplars per subject: a JSON object ``subject -> prompt`` (the header, then
    worked ``Q: ...\nA: Let's think step by step. ... The answer is (X).`` exemplars), the layout of
    lm-evaluation-harness's ``tasks/mmlu/flan_cot_fewshot/_cot_prompts.json``."""
    if not Path(path).is_file():
        raise TaskError(f"--cot-prompts {path}: no such file")
    try:
        prompts = json.loads(read_text(path, declarable=False))
    except json.JSONDecodeError as err:
        raise TaskError(f"--cot-prompts {path}: not valid JSON: {err}") from None
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise TaskError(f"--cot-prompts {path}: expected a JSON object of subject -> prompt text")
    return prompts
