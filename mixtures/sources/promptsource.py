"""promptsource-style ``templates.yaml`` files.

Each template has a ``jinja`` string with ``|||`` between the prompt and the
target, and optionally ``answer_choices`` (a jinja string of choices separated
by ``|||``, available to the template as ``answer_choices``) and ``metadata``, whose
``original_task`` marks the templates evaluation may use (T0's rule). The file's
``!Template`` and ``!TemplateMetadata`` tags are read as plain mappings by a
safe loader: nothing in the file can construct a Python object.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from flanforge.mixtures.sources.base import existing
from flanforge.mixtures.task import TaskError, Template
from flanforge.text import read_text


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads promptsource's tags as plain mappings."""


for _tag in ("!Template", "!TemplateMetadata"):
    _Loader.add_constructor(_tag, lambda loader, node: loader.construct_mapping(node, deep=True))


def load_templates(path: str | Path, encoding: str | None = None) -> list[Template]:
    path = existing(path)
    try:
        doc = yaml.load(read_text(path, encoding), Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as err:
        raise TaskError(f"{path}: not a valid templates file: {err}".replace("\n", " ")) from None
    except RecursionError:
        raise TaskError(f"{path}: nested too deeply") from None
    entries = (doc or {}).get("templates") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise TaskError(f"{path}: no 'templates' mapping")
    templates = []
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise TaskError(f"{path}: template '{key}' is not a mapping")
        name = str(entry.get("name") or key)
        jinja, choices = entry.get("jinja", ""), entry.get("answer_choices")
        if not isinstance(jinja, str) or not (choices is None or isinstance(choices, str)):
            raise TaskError(f"{path}: template '{name}': 'jinja' and 'answer_choices' must be strings")
        pieces = jinja.split("|||")
        if len(pieces) != 2:
            raise TaskError(f"{path}: template '{name}': expected one '|||' between prompt and target, found {len(pieces) - 1}")
        metadata = entry.get("metadata") or {}
        original = bool(metadata.get("original_task", False)) if isinstance(metadata, dict) else False
        templates.append(Template(name, pieces[0], pieces[1], choices=choices, original_task=original))
    return templates
