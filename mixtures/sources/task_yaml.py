"""Tasks and mixtures written as YAML files, no Python needed (the README shows one).

A file whose top-level key is ``task`` defines one task; ``mixture`` defines a
mixture of tasks, sub-mixtures, Flan-collection exports, a Flan-collection
directory (``flan_collection: DIR``, the ``flan2022`` mixture over it) and NIV2
task directories. Relative paths are relative to the file. Files are read with
``yaml.safe_load``; unknown keys are errors naming the closest valid key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from flanforge.errors import did_you_mean
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.sources import niv2
from flanforge.mixtures.sources.base import FileSource, existing
from flanforge.mixtures.sources.flan_collection import FlanCollection
from flanforge.mixtures.sources.flan_jsonl import flan_mixture
from flanforge.mixtures.sources.hf_disk import HfDiskSource
from flanforge.mixtures.sources.promptsource import load_templates
from flanforge.mixtures.sources.tabular import TableSource
from flanforge.mixtures.task import Task, TaskError, Template

TASK_KEYS = (
    "task", "source", "fields", "templates", "promptsource", "inverted_templates", "formats", "options_field",
    "rationale_field", "instruction_position", "max_shots", "fewshot_budget", "metric",
)
SOURCE_KEYS = ("type", "path", "splits", "holdout", "columns", "on_bad_record")
SOURCE_TYPES = ("table", "hf_disk", "niv2")
TEMPLATE_KEYS = ("id", "instruction", "input", "target", "choices")
MIXTURE_KEYS = ("mixture", "members")
MEMBER_KINDS = ("task", "mixture", "flan_jsonl", "flan_collection", "niv2")
MEMBER_KEYS = (*MEMBER_KINDS, "rate", "task_rate", "on_bad_record")
RATE_KEYS = ("cap", "temperature")

Resolve = Callable[[str, str, Path], "Task | Mixture"]
"""``resolve(kind, ref, base_dir)``: the task or mixture a member names (a registered name or a YAML path)."""


def is_yaml_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml"))


def load(path: str | Path, resolve: Resolve) -> Task | Mixture:
    """The task or mixture a YAML file defines."""
    path = existing(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TaskError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    try:
        if isinstance(spec, dict) and "task" in spec:
            return build_task(spec, path.parent)
        if isinstance(spec, dict) and "mixture" in spec:
            return build_mixture(spec, path.parent, resolve)
        raise TaskError("expected a mapping with a top-level 'task' or 'mixture' key")
    except TaskError as err:
        raise TaskError(f"{path}: {err}") from None


def _check_keys(spec: Any, allowed: Iterable[str], what: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise TaskError(f"{what}: expected a mapping, got {spec!r}")
    allowed = list(allowed)
    for key in spec:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, otherwise=f"; valid keys: {', '.join(allowed)}")
            raise TaskError(f"{what}: unknown key '{key}'{hint}")
    return spec


def _name(spec: dict[str, Any], key: str) -> str:
    name = spec.get(key)
    if not isinstance(name, str) or not name.strip():
        raise TaskError(f"'{key}' must be a non-empty name, got {name!r}")
    return name


def build_task(spec: dict[str, Any], base: Path) -> Task:
    _check_keys(spec, TASK_KEYS, "task")
    name = _name(spec, "task")
    source_spec = _check_keys(spec.get("source"), SOURCE_KEYS, f"task '{name}': source")
    kind = source_spec.get("type", "table")
    if kind not in SOURCE_TYPES:
        raise TaskError(f"task '{name}': source type '{kind}' is not one of {list(SOURCE_TYPES)}")
    if "templates" in spec and "promptsource" in spec:
        raise TaskError(f"task '{name}': give 'templates' or 'promptsource', not both")
    if "promptsource" in spec:
        templates = load_templates(base / spec["promptsource"])
    elif "templates" in spec:
        templates = [_template(t, f"task '{name}'") for t in spec["templates"]]
    elif kind == "niv2":
        templates = list(niv2.TEMPLATES)
    else:
        raise TaskError(f"task '{name}': needs 'templates' or 'promptsource'")
    inverted = [_template(t, f"task '{name}'") for t in spec.get("inverted_templates", [])]
    options_field, rationale_field = spec.get("options_field"), spec.get("rationale_field")
    used = set().union(*(t.fields() for t in templates + inverted)) | {options_field, rationale_field}
    default_fields = niv2.FIELDS if kind == "niv2" else sorted(used - {None})
    fields = tuple(spec.get("fields", default_fields))
    if not fields or not all(isinstance(f, str) for f in fields) or isinstance(spec.get("fields"), str):
        raise TaskError(f"task '{name}': 'fields' must be a non-empty list of names")
    targets = sorted(set().union(*(t.target_fields() for t in templates)) & set(fields))
    source = _source(source_spec, kind, base, fields, targets)
    position = spec.get("instruction_position", "before")
    if position not in ("before", "after"):
        raise TaskError(f"task '{name}': instruction_position must be 'before' or 'after', got {position!r}")
    return Task(
        name=name,
        fields=fields,
        templates=tuple(templates),
        source=source,
        formats=tuple(spec.get("formats") or _default_formats(source, options_field, rationale_field, inverted)),
        family="yaml",
        options_field=options_field,
        rationale_field=rationale_field,
        inverted_templates=tuple(inverted),
        instruction_first=position == "before",
        max_shots=_number(spec, "max_shots", 3, int),
        fewshot_budget=_number(spec, "fewshot_budget", 512, int),
        metric=spec.get("metric", "rouge" if kind == "niv2" else "exact_match"),
    )


def _template(spec: Any, what: str) -> Template:
    spec = _check_keys(spec, TEMPLATE_KEYS, f"{what}: template")
    for key in ("id", "input"):
        if not isinstance(spec.get(key), str):
            raise TaskError(f"{what}: every template needs a string '{key}'")
    return Template(**{k: str(v) for k, v in spec.items()})


def _source(spec: dict[str, Any], kind: str, base: Path, fields: tuple[str, ...], targets: list[str]) -> FileSource:
    if "path" not in spec:
        raise TaskError("source: needs a 'path'")
    path = base / spec["path"]
    common = {"holdout": spec.get("holdout"), "on_bad_record": spec.get("on_bad_record")}
    if kind == "niv2":
        return niv2.Niv2Source(path, **common)
    checks = {"fields": fields, "target_fields": targets, "columns": spec.get("columns"), **common}
    splits = spec.get("splits") or {}
    if kind == "hf_disk":
        return HfDiskSource(path, split_names={"train": "train", **splits}, **checks)
    return TableSource({"train": path, **{split: base / p for split, p in splits.items()}}, **checks)


def _default_formats(
    source: FileSource, options_field: str | None, rationale_field: str | None, inverted: list[Template]
) -> list[str]:
    """Every format the task can do: few-shot ones when it has an exemplar pool."""
    kinds = ["noopt"]
    kinds += ["opt"] if options_field else []
    kinds += ["cot"] if rationale_field else []
    kinds += ["inv"] if inverted else []
    shots = ("zs", "fs") if source.has_exemplars else ("zs",)
    return [f"{s}_{k}" for s in shots for k in kinds]


def build_mixture(spec: dict[str, Any], base: Path, resolve: Resolve) -> Mixture:
    _check_keys(spec, MIXTURE_KEYS, "mixture")
    name = _name(spec, "mixture")
    members = spec.get("members")
    if not isinstance(members, list) or not members:
        raise TaskError(f"mixture '{name}': 'members' must be a non-empty list")
    return Mixture(name, [_member(m, base, resolve, f"mixture '{name}'") for m in members])


def _member(spec: Any, base: Path, resolve: Resolve, what: str) -> tuple[Task | Mixture, Rate]:
    spec = _check_keys(spec, MEMBER_KEYS, f"{what}: member")
    kinds = [k for k in MEMBER_KINDS if k in spec]
    if len(kinds) != 1:
        raise TaskError(f"{what}: a member names exactly one of {list(MEMBER_KINDS)}, got {spec}")
    kind, ref = kinds[0], str(spec[kinds[0]])
    rate = _rate(spec.get("rate"))
    policy = {"on_bad_record": spec.get("on_bad_record")}
    if kind in ("task", "mixture") and "on_bad_record" in spec:
        raise TaskError(f"{what}: set on_bad_record in the source of the task it names, not on the member")
    if kind == "flan_jsonl":
        return flan_mixture(base / ref, Path(ref).stem, _rate(spec.get("task_rate")), **policy), rate
    if kind == "flan_collection":
        return FlanCollection(base / ref, **policy).mixture("flan2022"), rate
    if kind == "niv2":
        return niv2.niv2_mixture(base / ref, Path(ref).name, _rate(spec.get("task_rate"), cap=5000), **policy), rate
    return resolve(kind, ref, base), rate


def _rate(spec: Any, cap: int | None = None) -> Rate:
    """A number is a fixed weight; a mapping gives ``cap``/``temperature``; nothing is examples-proportional."""
    if spec is None:
        return Rate.examples(cap=cap)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Rate.fixed(spec)
    spec = _check_keys(spec, RATE_KEYS, "rate")
    return Rate.examples(cap=_number(spec, "cap", None, int), temperature=_number(spec, "temperature", 1.0, float))


def _number(spec: dict[str, Any], key: str, default: Any, kind: type) -> Any:
    value = spec.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise TaskError(f"'{key}' must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    return kind(value)
