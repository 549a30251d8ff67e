"""File-backed record sources: per-split files, hold-outs, row checks and the bad-record policy.

A row that cannot be used (bad JSON, non-UTF-8 bytes, a missing field, an
empty target) is an error naming ``file:line`` and the field, or, with the
policy ``skip``, is skipped and counted in the source's ``bad_records``. The
policy is set per source (``on_bad_record`` in a task YAML); a source that sets
none follows the policy the run passes to ``registry.load_mixture`` (the
config's ``mixture.on_bad_record``; ``error`` by default).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from flanforge.mixtures.task import SPLITS, TaskError
from flanforge.text import check_encoding

POLICIES = ("error", "skip")

RowStream = Iterator[tuple[str, "dict[str, Any] | str"]]
"""``(where, row)`` pairs; ``row`` is the record, or a string saying what is wrong with the line."""


def checked_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise TaskError(f"on_bad_record must be one of {list(POLICIES)}, got '{policy}'")
    return policy


class BadRecords:
    """The bad-record policy of a reader that is not a :class:`FileSource` (the eval-only benchmark files):
    ``error`` raises the problem, ``skip`` counts it in ``count``."""

    def __init__(self, policy: str = "error"):
        self.policy = checked_policy(policy)
        self.count = 0

    def __call__(self, problem: str) -> None:
        if self.policy == "error":
            raise TaskError(problem)
        self.count += 1


def record_key(record: Mapping[str, Any]) -> str:
    """A record's content, for telling identical records apart from distinct ones."""
    return json.dumps(record, sort_keys=True, default=str)


class FileSource:
    """Records of one task read from files and checked row by row; a ``Task.source``.

    ``splits`` maps a split to a location the subclass's :meth:`rows` reads (a
    path for files). ``holdout`` carves ``exemplars`` and/or ``validation``
    out of ``train`` with a seeded draw. Every field in ``fields`` must be
    present, and every one in ``target_fields`` non-empty; files are text in ``encoding`` (default UTF-8,
    ``flanforge/text.py``); a value must be text, a
    finite number, a boolean or a list of those (``text_fields``: text only), never
    a JSON object, a nested list, NaN or infinity; ``columns`` renames
    (field -> column). A training record identical to an exemplar or
    validation record is dropped from ``train``, so no exemplar is ever a
    training target.
    """

    def __init__(
        self,
        splits: Mapping[str, Any],
        *,
        fields: Sequence[str],
        target_fields: Sequence[str] = (),
        holdout: Mapping[str, int] | None = None,
        columns: Mapping[str, str] | None = None,
        on_bad_record: str | None = None,
        seed: int = 0,
        text_fields: Sequence[str] = (),
        encoding: str | None = None,
    ):
        self.holdout = dict(holdout or {})
        for split in [*splits, *self.holdout]:
            if split not in SPLITS:
                raise TaskError(f"unknown split '{split}' (splits: {', '.join(SPLITS)})")
        if "train" not in splits:
            raise TaskError("a source needs a 'train' split")
        for split, n in self.holdout.items():
            if split == "train" or split in splits or not isinstance(n, int) or n < 0:
                raise TaskError(
                    f"holdout {split}: {n!r}: a hold-out carves a count >= 0 of 'exemplars' or 'validation' "
                    "records out of train, for a split not also given as a file"
                )
        self.splits = dict(splits)
        self.fields = tuple(fields)
        self.target_fields = tuple(target_fields)
        self.columns = dict(columns or {})
        self.text_fields = tuple(text_fields)
        self.on_bad_record = None if on_bad_record is None else checked_policy(on_bad_record)
        self.encoding = None if encoding is None else check_encoding(encoding)
        self.default_policy = "error"
        self.seed = seed
        self.bad_records = 0
        self._records: dict[str, list[dict[str, Any]]] | None = None

    def use_default_policy(self, policy: str) -> None:
        """Follow ``policy`` unless the source sets its own (records already read are read again)."""
        policy = checked_policy(policy)
        if self.on_bad_record is None and policy != self.default_policy:
            self.default_policy, self._records, self.bad_records = policy, None, 0

    @property
    def policy(self) -> str:
        """The bad-record policy the source follows: its own, else the run's."""
        return self.on_bad_record or self.default_policy

    @property
    def has_exemplars(self) -> bool:
        return "exemplars" in self.splits or self.holdout.get("exemplars", 0) > 0

    def rows(self, location: Any) -> RowStream:
        """Every row at ``location`` with where it is (``file:line``)."""
        raise NotImplementedError

    def describe(self, location: Any) -> str:
        """``location`` in a message (a file's path; subclasses reading one file name the part)."""
        return str(location)

    def __call__(self, split: str) -> list[dict[str, Any]]:
        if self._records is None:
            self._records = self._load()
        return self._records.get(split, [])

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        policy = self.policy
        out = {split: self._read(location, policy) for split, location in self.splits.items()}
        train = out["train"]
        if not train and not self.bad_records and policy == "error":  # under skip: an empty task (preflight)
            raise TaskError(f"{self.describe(self.splits['train'])}: no records")
        picks = random.Random(f"{self.seed}/holdout").sample(range(len(train)), min(sum(self.holdout.values()), len(train)))
        start = 0
        for split, n in self.holdout.items():
            out[split] = [train[i] for i in picks[start : start + n]]
            start += n
        held = set(picks)
        kept = {record_key(r) for split, records in out.items() if split != "train" for r in records}
        out["train"] = [r for i, r in enumerate(train) if i not in held and record_key(r) not in kept]
        return out

    def _read(self, location: Any, policy: str) -> list[dict[str, Any]]:
        good = []
        for where, row in self.rows(location):
            problem = row if isinstance(row, str) else self._problem(row)
            if problem is None:
                good.append({f: row[self.columns.get(f, f)] for f in self.fields})
            elif policy == "error":
                raise TaskError(f"{where}: {problem}")
            else:
                self.bad_records += 1
        return good

    def _problem(self, row: dict[str, Any]) -> str | None:
        for f in self.fields:
            column = self.columns.get(f, f)
            if row.get(column) is None:
                return f"missing field '{f}'" + (f" (column '{column}')" if column != f else "")
            kind = value_problem(row[column], text=f in self.text_fields)
            if kind:
                return f"field '{f}' {kind}"
        for f in self.target_fields:
            value = row[self.columns.get(f, f)]
            if (isinstance(value, str) and not value.strip()) or (isinstance(value, (list, tuple)) and not value):
                return f"empty target field '{f}'"
        return None


def value_problem(value: Any, text: bool = False) -> str | None:
    """What is wrong with a field's value (its JSON type or shape), or None when it can be rendered."""
    if text:
        return None if isinstance(value, str) else f"must be text, got {_kind(value)}"
    if isinstance(value, (list, tuple)):
        bad = next((v for v in value if not _scalar(v)), None)
        return None if bad is None else f"is a list holding {_kind(bad)}; items must be text or numbers"
    return None if _scalar(value) else f"is {_kind(value)}; expected text, a number or a list of them"


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool))


def _kind(value: Any) -> str:
    if isinstance(value, (bool, int, float)):
        return f"the {'non-finite ' if isinstance(value, float) else ''}{type(value).__name__} {value}"
    names = {str: "text", dict: "a JSON object", list: "a list", tuple: "a list", type(None): "null"}
    return names.get(type(value), f"a value of type {type(value).__name__}")


def existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise TaskError(f"file not found: {path}")
    return path
