"""Flan-collection JSONL exports: already-rendered examples, one JSON object a line.

Each line has ``inputs``, ``targets``, ``task_name``, ``task_source`` (Flan2021,
T0, NIv2, CoT, Dialog, ...) and ``template_type`` (``zs_opt``, ``fs_noopt``,
...). A file becomes one task per ``task_name``, grouped into one sub-mixture
per ``task_source``. The records are not re-rendered: ``template_type`` gives
each example's format. A line that is not JSON has no ``task_name``; it is
counted with the task of the nearest good line above it (the first task when
there is none).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property
from pathlib import Path
from typing import Any

from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.sources.base import FileSource, RowStream, existing
from flanforge.mixtures.sources.tabular import jsonl_rows
from flanforge.mixtures.task import Task, TaskError, Template
from flanforge.names import checked_name

FIELDS = ("inputs", "targets", "task_name", "task_source", "template_type")
TEMPLATE = Template("flan", "{{ inputs }}", "{{ targets }}")


def normalise_format(template_type: str) -> str:
    """A Flan ``template_type`` as one of flanforge's format names (``fs_cot``, ``zs_noopt``, ...)."""
    t = template_type.lower()
    kind = "cot" if "cot" in t else "inv" if "inv" in t else "noopt" if "noopt" in t else "opt" if "opt" in t else "noopt"
    return f"{'fs' if 'fs' in t or 'few' in t else 'zs'}_{kind}"


class FlanFile:
    """One export file, read once and split by ``task_name``."""

    def __init__(self, path: str | Path, encoding: str | None = None):
        self.path = Path(path)
        self.encoding = encoding

    @cached_property
    def rows_by_task(self) -> dict[str, list[tuple[str, dict[str, Any] | str]]]:
        groups: dict[str, list] = defaultdict(list)
        orphans: list[tuple[str, str]] = []
        current = None
        for where, row in jsonl_rows(existing(self.path), self.encoding):
            name = row.get("task_name") if isinstance(row, dict) else None
            if isinstance(name, str) and name:
                try:
                    current = checked_name(name, "task")
                except TaskError as err:  # a bad row (the policy's), counted with the task above it
                    row = str(err)
                else:
                    if isinstance(row.get("template_type"), str):
                        row = {**row, "template_type": normalise_format(row["template_type"])}
            if current is None:
                orphans.append((where, row if isinstance(row, str) else "missing field 'task_name'"))
            else:
                groups[current].append((where, row))
        if not groups:
            raise TaskError(f"{self.path}: no line names a task_name")
        groups[next(iter(groups))][:0] = orphans
        return dict(groups)


class FlanJsonlSource(FileSource):
    """The records of one ``task_name`` in a :class:`FlanFile` (only a ``train`` split)."""

    def __init__(self, file: FlanFile, task_name: str, **kwargs: Any):
        self.file = file
        super().__init__({"train": task_name}, fields=FIELDS, target_fields=("targets",), text_fields=FIELDS, **kwargs)

    def rows(self, location: str) -> RowStream:
        return iter(self.file.rows_by_task[location])


def flan_mixture(path: str | Path, name: str, task_rate: Rate = Rate.examples(), **source_kwargs: Any) -> Mixture:
    """The file's tasks, one sub-mixture per ``task_source``, each task at ``task_rate``."""
    file = FlanFile(path, source_kwargs.get("encoding"))
    by_source: dict[str, list[tuple[Task, Rate]]] = defaultdict(list)
    for task_name, rows in file.rows_by_task.items():
        good = [row for _, row in rows if isinstance(row, dict)]
        formats = sorted({row["template_type"] for row in good if isinstance(row.get("template_type"), str)})
        # Rows whose fields are not text are bad records (the source reports them); they name nothing here.
        task_source = next((row["task_source"] for row in good if isinstance(row.get("task_source"), str)
                            and row["task_source"]), "unknown")
        task = Task(
            name=task_name,
            fields=FIELDS,
            templates=(TEMPLATE,),
            source=FlanJsonlSource(file, task_name, **source_kwargs),
            formats=tuple(formats) or ("zs_noopt",),
            family=f"flan/{task_source}",
            format_field="template_type",
        )
        by_source[task_source].append((task, task_rate))
    return Mixture(name, [(Mixture(f"{name}/{src}", members), Rate.examples()) for src, members in by_source.items()])
