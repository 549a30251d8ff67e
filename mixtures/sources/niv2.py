"""Natural-Instructions v2 task files (``tasks/taskNNN_*.json``).

A task file holds a ``Definition``, ``Positive Examples`` and ``Negative
Examples`` (each ``input``/``output``/``explanation``) and ``Instances``
(``id``/``input``/``output``, where ``output`` is a list of acceptable
answers). The instances are the ``train`` split (a hold-out may carve a
``validation`` split from them); the positive examples are the few-shot pool,
so no exemplar is an instance. Negative examples are not used. Records carry
``definition``, ``input``, ``output`` (the first answer, the training target)
and ``outputs`` (all of them, for evaluation).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.sources.base import FileSource, RowStream, existing
from flanforge.mixtures.task import Task, TaskError, Template
from flanforge.text import read_text

FIELDS = ("definition", "input", "output", "outputs")
TEMPLATES = (
    Template("niv2_plain", "{{ input }}", "{{ output }}", "{{ definition }}"),
    Template("niv2_def", "Input: {{ input }}\nOutput:", "{{ output }}", "Definition: {{ definition }}"),
    Template("niv2_task", "Now complete the following example.\nInput: {{ input }}", "{{ output }}", "{{ definition }}"),
    Template("niv2_instr", "{{ input }}", "{{ output }}", "Instructions: {{ definition }}"),
    Template("niv2_qa", "Q: {{ input }}\nA:", "{{ output }}", "Task: {{ definition }}"),
)


class Niv2Source(FileSource):
    def __init__(self, path: str | Path, **kwargs: Any):
        self.path = Path(path)
        super().__init__(
            {"train": "Instances", "exemplars": "Positive Examples"}, fields=FIELDS, target_fields=("output",),
            text_fields=("definition", "input", "output"), **kwargs
        )

    def describe(self, location: str) -> str:
        return f"{self.path}: '{location}'"

    @cached_property
    def document(self) -> dict[str, Any]:
        text = read_text(existing(self.path), self.encoding)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise TaskError(f"{self.path}:{err.lineno}: bad JSON: {err.msg}") from None
        except RecursionError:
            raise TaskError(f"{self.path}: JSON nested too deeply") from None
        if not isinstance(doc, dict) or "Instances" not in doc:
            raise TaskError(f"{self.path}: not a Natural-Instructions task (no 'Instances')")
        return doc

    def rows(self, location: str) -> RowStream:
        definition = self.document.get("Definition") or []
        definition = [definition] if isinstance(definition, str) else definition
        if not isinstance(definition, list) or not all(isinstance(d, str) for d in definition):
            raise TaskError(f"{self.path}: 'Definition' must be a list of strings, got {str(definition)[:80]!r}")
        items = self.document.get(location) or []
        if not isinstance(items, list):
            raise TaskError(f"{self.path}: '{location}' must be a list of objects, got {type(items).__name__}")
        for i, item in enumerate(items):
            where = f"{self.path}: {location}[{i}]"
            if not isinstance(item, dict):
                yield where, f"expected an object, got {type(item).__name__}"
                continue
            outputs = item.get("output")
            outputs = [outputs] if isinstance(outputs, str) else outputs
            if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
                yield where, f"'output' must be a string or a list of strings, got {str(outputs)[:80]!r}"
                continue
            first = None if outputs is None else (outputs[0] if outputs else "")
            yield where, {"definition": " ".join(definition), "input": item.get("input"), "output": first, "outputs": outputs}


def niv2_task(path: str | Path, name: str | None = None, **source_kwargs: Any) -> Task:
    """A task from one NIV2 file (named after the file), rendered zero- and few-shot, scored with ROUGE-L."""
    path = Path(path)
    return Task(
        name=name or path.stem,
        fields=FIELDS,
        templates=TEMPLATES,
        source=Niv2Source(path, **source_kwargs),
        formats=("zs_noopt", "fs_noopt"),
        family="niv2",
        metric="rouge",
    )


def niv2_mixture(directory: str | Path, name: str, task_rate: Rate = Rate.examples(cap=5000), **source_kwargs: Any) -> Mixture:
    """Every ``*.json`` task in ``directory``, examples-proportional with FLAN's NIV2 cap by default."""
    paths = sorted(existing(directory).glob("*.json"))
    if not paths:
        raise TaskError(f"{directory}: no NIV2 task files (*.json)")
    return Mixture(name, [(niv2_task(p, **source_kwargs), task_rate) for p in paths])
