"""JSONL, CSV/TSV and parquet files, one record per line or row (the reader is chosen by suffix)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from flanforge.mixtures.sources.base import FileSource, RowStream, existing
from flanforge.mixtures.task import TaskError
from flanforge.text import TextDecodeError, decode

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


class TableSource(FileSource):
    """``splits`` maps a split to a JSONL (one object a line), CSV, TSV or parquet file."""

    def __init__(self, splits: dict[str, str | Path], **kwargs: Any):
        for path in splits.values():
            if Path(path).suffix not in SUFFIXES:
                raise TaskError(f"{path}: unknown table type (suffixes: {', '.join(SUFFIXES)})")
        super().__init__({split: Path(p) for split, p in splits.items()}, **kwargs)

    def rows(self, location: Path) -> RowStream:
        path = existing(location)
        if path.suffix in (".jsonl", ".json"):
            return jsonl_rows(path, self.encoding)
        if path.suffix == ".parquet":
            return _parquet_rows(path)
        return _csv_rows(path, "\t" if path.suffix == ".tsv" else ",", self.encoding)


def _lines(path: Path, encoding: str | None):
    """``(line number, text or None, problem or None)`` per line of ``path``, decoded one by one."""
    offset = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, decode(raw, str(path), encoding, line=n, offset=offset), None
            except TextDecodeError as err:
                yield n, None, err.problem
            offset += len(raw)


def jsonl_rows(path: Path, encoding: str | None = None) -> RowStream:
    for n, line, problem in _lines(path, encoding):
        where = f"{path}:{n}"
        if line is None:
            yield where, problem  # type: ignore[misc]
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            yield where, f"bad JSON: {err.msg} at column {err.colno}"
            continue
        except RecursionError:
            yield where, "JSON nested too deeply"
            continue
        yield where, obj if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"


def _csv_rows(path: Path, delimiter: str, encoding: str | None) -> RowStream:
    lines, numbers, problems = [], [], []
    for n, line, problem in _lines(path, encoding):
        if line is None:
            problems.append((n, problem))
        else:
            lines.append(line)
            numbers.append(n)
    reader = csv.DictReader(lines, delimiter=delimiter)
    try:
        rows = [(numbers[reader.line_num - 1], _csv_row(row)) for row in reader]
    except csv.Error as err:
        raise TaskError(f"{path}:{numbers[reader.line_num - 1]}: not a readable {path.suffix[1:]} file: {err}") from None
    for n, row in sorted(problems + rows, key=lambda item: item[0]):
        yield f"{path}:{n}", row


def _csv_row(row: dict[Any, Any]) -> dict[str, Any] | str:
    """The row, or what is wrong with its shape (more cells than the header has columns)."""
    if None in row:
        return f"{len(row) - 1 + len(row[None])} cells, but the header has {len(row) - 1} columns"
    return row


def _parquet_rows(path: Path) -> RowStream:
    import pyarrow.parquet as pq  # imported on use: most runs never read parquet

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... on a file that is not parquet
        raise TaskError(f"{path}: not a readable parquet file: {' '.join(str(err).split())[:160]}") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield f"{path}: row {i}", row
