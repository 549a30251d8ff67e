"""The files of a Flan 2022 collection as users hold it, read as a stream of pre-rendered rows.

Two published layouts, both streamed (a parquet part a batch at a time, a
JSONL file a line at a time), so memory does not grow with the file:

- parquet directories ``<submix>_<zs|fs><opt|noopt>_data/part.N.parquet`` (the
  Hugging Face copies of the collection, e.g. ``Open-Orca/FLAN``), columns
  ``inputs``, ``targets``, ``_task_name``, ``_template_type`` (and
  ``_template_idx``, ``_task_source``, not needed); the directory names the
  sub-mixture and the zero/few-shot × options variant. Columns may lack the
  leading underscore, as some copies write them.
- JSONL exports (``*.jsonl``, ``*.json``, gzipped or not: JSON Lines), one
  object a line with ``inputs``, ``targets``, ``task_name``, ``task_source``
  and ``template_type`` (what FLAN's export writes; some copies, e.g. an
  earlier ``Open-Orca/FLAN``, publish ``<submix>_<variant>_submix_data.json``
  files like this, with the underscored names); ``task_source`` names the sub-mixture
  (``Flan2021``, ``T0``, ``NIv2``, ``CoT``, ``Dialog``), ``template_type`` the
  variant.

Each good row becomes ``(task key, JSON line)``: the key is
``<submix>_<variant>/<task_name>``, the line holds ``inputs``, ``targets`` and
``template_type`` (a flanforge format name, so per-format logs work). A row
with a missing or empty field is a problem ``file: row N: ...`` for the
bad-record policy.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C string encoder json.dumps uses
from pathlib import Path
from typing import Iterator, Optional

from flanforge.mixtures.sources.base import existing
from flanforge.mixtures.sources.flan_jsonl import normalise_format
from flanforge.mixtures.task import TaskError
from flanforge.names import checked_name

SUBMIXES = ("flan", "t0", "niv2", "cot", "dialog")
VARIANTS = {
    "flan": ("zsopt", "fsopt", "zsnoopt", "fsnoopt"),
    "t0": ("zsopt", "fsopt", "zsnoopt", "fsnoopt"),
    "niv2": ("zsopt", "fsopt"),
    "cot": ("zsopt", "fsopt"),
    "dialog": ("zsopt", "fsopt"),
}
"""The variants FLAN 2022 mixes per sub-mixture (``flan/v2/mixtures.py`` skips NoOpt for CoT, NIv2, Dialog)."""
TASK_SOURCES = {"flan2021": "flan", "flan": "flan", "t0": "t0", "p3": "t0", "niv2": "niv2", "cot": "cot", "dialog": "dialog"}
"""``task_source`` values (lower case, letters and digits only) -> sub-mixture."""
COLUMNS = ("inputs", "targets", "_task_name", "_template_type")
EXPORTS = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
"""JSON Lines exports, read line by line whatever their size."""
PART_DIR = re.compile(r"([a-z0-9]+)_(zs|fs)(opt|noopt)_data")
BATCH_ROWS = 8192

Row = tuple[Optional[str], Optional[bytes], Optional[str]]
"""``(task key, JSON line, None)`` for a good row; ``(task key or None, None, "where: problem")`` for a bad one."""


@dataclass(frozen=True)
class Unit:
    """One file of the collection: the unit of scanning, preparing and resuming."""

    path: Path
    rel: str
    """Path relative to the collection directory."""
    submix: Optional[str] = None
    """Sub-mixture and variant of a parquet directory; None for a JSONL export (per row)."""
    variant: Optional[str] = None

    @property
    def stem(self) -> str:
        """A file-name-safe name for the unit's outputs."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.rel.replace("/", "__"))


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def find_units(data_dir: str | Path) -> tuple[list[Unit], list[str]]:
    """The collection's files and notes on directories FLAN 2022 gives no weight; errors name the file."""
    root = existing(data_dir)
    if not root.is_dir():
        raise TaskError(f"{root}: the Flan collection is a directory, not a file")
    units, notes, other = [], [], []
    for entry in sorted(root.iterdir(), key=_natural):
        if entry.name.startswith("."):
            continue
        match = PART_DIR.fullmatch(entry.name) if entry.is_dir() else None
        if entry.is_file() and entry.name.endswith(EXPORTS):
            units.append(Unit(entry, entry.name))
        elif match and match.group(1) in VARIANTS:
            submix, variant = match.group(1), match.group(2) + match.group(3)
            if variant not in VARIANTS[submix]:
                notes.append(f"{entry.name}: not read (FLAN 2022 gives {submix} {variant} no weight)")
                continue
            parts = sorted((p for p in entry.iterdir() if not p.name.startswith(".")), key=_natural)
            for part in parts:
                if not part.name.endswith(".parquet"):
                    raise TaskError(f"{part}: not a parquet part (expected part.N.parquet files in {entry})")
                units.append(Unit(part, f"{entry.name}/{part.name}", submix, variant))
        else:
            other.append(entry.name + ("/" if entry.is_dir() else ""))
    if not units:
        expected = ", ".join(f"{s}_{v}_data/" for s in SUBMIXES for v in VARIANTS[s])
        raise TaskError(
            f"{root}: no Flan collection data; expected parquet directories ({expected}) or JSON Lines "
            f"exports ({', '.join('*' + e for e in EXPORTS)}); found: {', '.join(other) or 'nothing'}"
        )
    return units, notes + [f"{name}: not a Flan collection directory or export, not read" for name in other]


def unit_rows(unit: Unit, encode: bool = True) -> Iterator[Row]:
    """Every row of the unit as :data:`Row`; ``encode=False`` skips building the JSON lines (counting)."""
    rows = _parquet_rows(unit, counting=not encode) if unit.variant else _jsonl_rows(unit)
    routes: dict[tuple, tuple[Optional[str], Optional[str], str]] = {}  # (name, type, source) -> key, problem, line end
    for n, row in enumerate(rows, 1):
        if row is None:
            continue  # a blank line
        if isinstance(row, str):
            yield None, None, f"{_where(unit, n)}: {row}"
            continue
        inputs, targets, labels = row
        try:
            key, problem, end = routes.get(labels) or routes.setdefault(labels, _route(unit, *labels))
        except TypeError:  # a label that is not hashable (JSON list or object): a bad row either way
            key, problem, end = _route(unit, *labels)
        if problem is None:
            problem = _problem(inputs, targets)
        if problem is not None:
            yield key, None, f"{_where(unit, n)}: {problem}"
        elif not encode:
            yield key, b"", None
        else:
            try:
                yield key, f'{{"inputs": {encode_basestring(inputs)}, "targets": {encode_basestring(targets)}{end}'.encode(), None
            except UnicodeEncodeError:
                yield key, None, f"{_where(unit, n)}: text that is not valid Unicode (a lone surrogate)"


def _route(unit: Unit, name, template_type, source) -> tuple[Optional[str], Optional[str], str]:
    """The task key of rows with these labels (or the problem with them), and the end of their JSON line."""
    key, problem = _key(unit, name, template_type, source)
    fmt = normalise_format(template_type) if problem is None else ""
    return key, problem, f', "template_type": "{fmt}"}}\n'


def _where(unit: Unit, n: int) -> str:
    return f"{unit.path}: row {n}" if unit.variant else f"{unit.path}:{n}"


def _key(unit: Unit, name, template_type, source) -> tuple[Optional[str], Optional[str]]:
    if not isinstance(name, str) or not name:
        return None, "missing field 'task_name'"
    if not isinstance(template_type, str) or not template_type:
        return None, "missing field 'template_type'"
    submix, variant = unit.submix, unit.variant
    if variant is None:
        submix = TASK_SOURCES.get(re.sub(r"[^a-z0-9]", "", str(source).lower()))
        if submix is None:
            return None, f"task_source {source!r} is none of FLAN's (Flan2021, T0, NIv2, CoT, Dialog)"
        t = template_type.lower()
        variant = ("fs" if t.startswith("fs") else "zs") + ("noopt" if "noopt" in t else "opt")
        if variant not in VARIANTS[submix]:
            return None, f"template_type {template_type!r}: FLAN 2022 gives {submix} {variant} no weight"
    try:  # the key is the task's name: a bad one is a bad row (the policy's), not the collection's end
        return checked_name(f"{submix}_{variant}/{name}", "task"), None
    except TaskError as err:
        return None, str(err)


def _problem(inputs, targets) -> Optional[str]:
    if not isinstance(inputs, str):
        return "missing field 'inputs'"
    if not isinstance(targets, str):
        return "missing field 'targets'"
    if not targets.strip():
        return "empty target field 'targets'"
    return None


def _parquet_rows(unit: Unit, counting: bool) -> Iterator[tuple]:
    """``(inputs, targets, (task_name, template_type, None))`` per row, a batch at a time.

    ``counting``: the large ``inputs`` column is not read when the row groups'
    statistics say it holds no null (its only check); ``""`` stands in for it.
    """
    import pyarrow as pa  # imported on use: most runs never read parquet
    import pyarrow.parquet as pq

    try:
        part = pq.ParquetFile(unit.path)
    except (pa.ArrowException, OSError) as err:
        raise TaskError(f"{unit.path}: not a parquet file ({err})") from None
    schema = part.schema_arrow
    columns = []
    for column in COLUMNS:
        found = next((c for c in (column, column.lstrip("_")) if c in schema.names), None)
        if found is None:
            raise TaskError(f"{unit.path}: no column '{column}' (columns: {', '.join(schema.names)})")
        if not (pa.types.is_string(schema.field(found).type) or pa.types.is_large_string(schema.field(found).type)):
            raise TaskError(f"{unit.path}: column '{found}' holds {schema.field(found).type}, not text")
        columns.append(found)
    skip_inputs = counting and _no_nulls(part, schema.names.index(columns[0]))
    with part:
        for batch in part.iter_batches(batch_size=BATCH_ROWS, columns=columns[skip_inputs:]):
            values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            inputs = [""] * batch.num_rows if skip_inputs else values.pop(0)
            targets, names, types = values
            yield from zip(inputs, targets, zip(names, types, [None] * batch.num_rows))


def _no_nulls(part, column: int) -> bool:
    """Every row group's statistics for the column say it holds no null."""
    groups = (part.metadata.row_group(g).column(column).statistics for g in range(part.metadata.num_row_groups))
    return all(stats is not None and stats.has_null_count and stats.null_count == 0 for stats in groups)


def _jsonl_rows(unit: Unit) -> Iterator[tuple | str | None]:
    """``(inputs, targets, (task_name, template_type, task_source))`` per line; a bad line as a problem
    string, a blank one as None."""
    opener = gzip.open if unit.path.name.endswith(".gz") else open
    try:
        with opener(unit.path, "rb") as f:
            for raw in f:
                if not raw.strip():
                    yield None
                    continue
                try:
                    obj = json.loads(raw)
                except UnicodeDecodeError as err:
                    yield f"non-UTF-8 bytes at column {err.start + 1}"
                    continue
                except json.JSONDecodeError as err:
                    yield f"bad JSON: {err.msg} at column {err.colno}"
                    continue
                if not isinstance(obj, dict):
                    yield f"expected a JSON object, got {type(obj).__name__}"
                    continue
                get = obj.get
                yield get("inputs"), get("targets"), (get("task_name", get("_task_name")),
                                                      get("template_type", get("_template_type")),
                                                      get("task_source", get("_task_source")))
    except (gzip.BadGzipFile, EOFError) as err:
        raise TaskError(f"{unit.path}: not a readable gzip file ({err})") from None
