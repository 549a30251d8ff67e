"""Tasks and mixtures written as YAML files, no Python needed (the README shows one).

A file whose top-level key is ``task`` defines one task; ``mixture`` defines a
mixture of tasks, sub-mixtures, Flan-collection exports, a Flan-collection
directory (``flan_collection: DIR``, the ``flan2022`` mixture over it) and NIV2
task directories. Relative paths are relative to the file. Files are read with
``yaml.safe_load``; unknown keys are errors naming the closest valid key. A task's
``encoding:`` (a member's, for Flan-collection exports and NIV2 directories) is the
text encoding of its data and template files (default UTF-8: ``flanforge/text.py``).
"""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Any, Callable, Iterable

import jinja2
import yaml

from flanforge.errors import did_you_mean
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.sandbox import TemplateLimitError
from flanforge.mixtures.sources import niv2
from flanforge.mixtures.sources.base import FileSource, existing
from flanforge.mixtures.sources.flan_collection import FlanCollection
from flanforge.mixtures.sources.flan_jsonl import flan_mixture
from flanforge.mixtures.sources.hf_disk import HfDiskSource
from flanforge.mixtures.sources.hf_stream import HfStreamSource
from flanforge.mixtures.sources.promptsource import load_templates
from flanforge.mixtures.sources.tabular import TableSource
from flanforge.mixtures.storage import is_remote
from flanforge.mixtures.storage.staged import staged
from flanforge.mixtures.task import Task, TaskError, Template
from flanforge.text import check_encoding, read_text

TASK_KEYS = (
    "task", "source", "fields", "templates", "promptsource", "inverted_templates", "formats", "options_field",
    "rationale_field", "instruction_position", "max_shots", "fewshot_budget", "metric", "encoding",
)
SOURCE_KEYS = ("type", "path", "splits", "holdout", "columns", "on_bad_record", "streaming", "hf", "split")
SOURCE_TYPES = ("table", "hf_disk", "hf", "niv2")
TEMPLATE_KEYS = ("id", "instruction", "input", "target", "choices")
MIXTURE_KEYS = ("mixture", "members")
MEMBER_KINDS = ("task", "mixture", "flan_jsonl", "flan_collection", "niv2")
MEMBER_KEYS = (*MEMBER_KINDS, "rate", "task_rate", "on_bad_record", "encoding")
MEMBER_SOURCE_KEYS = {"on_bad_record": ("flan_jsonl", "flan_collection", "niv2"), "encoding": ("flan_jsonl", "niv2")}
"""Member keys passed to the sources a member reads itself, and the kinds of member that take them."""
RATE_KEYS = ("cap", "temperature")

Resolve = Callable[[str, str, Path], "Task | Mixture"]
"""``resolve(kind, ref, base_dir)``: the task or mixture a member names (a registered name or a YAML path)."""


def is_yaml_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml"))


def load(path: str | Path, resolve: Resolve) -> Task | Mixture:
    """The task or mixture a YAML file defines."""
    path = existing(path)
    try:
        spec = yaml.safe_load(read_text(path, declarable=False))  # the file that declares its data's encoding
    except yaml.YAMLError as err:
        raise TaskError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    except RecursionError:
        raise TaskError(f"{path}: nested too deeply to be a task or mixture") from None
    try:
        if isinstance(spec, dict) and "task" in spec:
            return build_task(spec, path.parent, origin=str(path))
        if isinstance(spec, dict) and "mixture" in spec:
            return build_mixture(spec, path.parent, resolve)
        raise TaskError("expected a mapping with a top-level 'task' or 'mixture' key")
    except TaskError as err:
        raise TaskError(f"{path}: {err}") from None


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60


def show(value: Any) -> str:
    """A short repr for error messages (YAML aliases can make a value huge)."""
    return _SHOW.repr(value)


def _check_keys(spec: Any, allowed: Iterable[str], what: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise TaskError(f"{what}: expected a mapping, got {show(spec)}")
    allowed = list(allowed)
    for key in spec:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, otherwise=f"; valid keys: {', '.join(allowed)}")
            raise TaskError(f"{what}: unknown key {show(key)}{hint}")
    return spec


def _name(spec: dict[str, Any], key: str, what: str = "") -> str:
    name = spec.get(key)
    if not isinstance(name, str) or not name.strip():
        raise TaskError(f"{what}'{key}' must be a non-empty string, got {show(name)}")
    return name


def _optional_name(spec: dict[str, Any], key: str, what: str) -> str | None:
    return None if spec.get(key) is None else _name(spec, key, what)


def _list(spec: dict[str, Any], key: str, what: str, default: Any = ()) -> list[Any]:
    """``spec[key]`` as a list; null, a string (which would be walked letter by letter) or a mapping is an error."""
    value = spec.get(key, default)
    if not isinstance(value, (list, tuple)):
        raise TaskError(f"{what}'{key}' must be a list, got {show(value)}")
    return list(value)


def _mapping(spec: dict[str, Any], key: str, what: str, kind: type) -> dict[str, Any]:
    """``spec[key]`` (absent: empty) as a mapping of names to values of ``kind``."""
    value = spec.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise TaskError(f"{what}'{key}' must be a mapping of names to {kind.__name__} values, got {show(value)}")
    return value


def _fields_of(template: Template, what: str) -> set[str]:
    try:
        return template.fields()
    except jinja2.TemplateSyntaxError as err:
        raise TaskError(f"{what}, template '{template.id}': syntax error at line {err.lineno}: {err.message}") from None
    except TemplateLimitError as err:
        raise TaskError(f"{what}, template '{template.id}': {err}") from None


def build_task(spec: dict[str, Any], base: Path, origin: str = "") -> Task:
    _check_keys(spec, TASK_KEYS, "task")
    name = _name(spec, "task")
    source_spec = _hf_shorthand(_check_keys(spec.get("source"), SOURCE_KEYS, f"task '{name}': source"),
                                f"task '{name}': source")
    kind = source_spec.get("type", "table")
    if kind not in SOURCE_TYPES:
        raise TaskError(f"task '{name}': source type '{kind}' is not one of {list(SOURCE_TYPES)}")
    if "templates" in spec and "promptsource" in spec:
        raise TaskError(f"task '{name}': give 'templates' or 'promptsource', not both")
    what = f"task '{name}': "
    encoding = _encoding(spec, what)
    if "promptsource" in spec:
        templates = load_templates(base / _name(spec, "promptsource", what), encoding)
    elif "templates" in spec:
        templates = [_template(t, f"task '{name}'") for t in _list(spec, "templates", what)]
    elif kind == "niv2":
        templates = list(niv2.TEMPLATES)
    else:
        raise TaskError(f"task '{name}': needs 'templates' or 'promptsource'")
    inverted = [_template(t, f"task '{name}'") for t in _list(spec, "inverted_templates", what)]
    options_field, rationale_field = (_optional_name(spec, k, what) for k in ("options_field", "rationale_field"))
    used = set().union(*(_fields_of(t, f"task '{name}'") for t in templates + inverted)) | {options_field, rationale_field}
    default_fields = niv2.FIELDS if kind == "niv2" else sorted(used - {None})
    fields = tuple(_list(spec, "fields", what, default_fields))
    if not fields or not all(isinstance(f, str) for f in fields):
        raise TaskError(f"task '{name}': 'fields' must be a non-empty list of names")
    targets = sorted(set().union(*(t.target_fields() for t in templates)) & set(fields))
    try:
        source = _source(source_spec, kind, base, fields, targets, encoding)
    except TaskError as err:
        raise TaskError(f"task '{name}': {err}") from None
    formats = _list(spec, "formats", what, None) if spec.get("formats") is not None else None
    position = spec.get("instruction_position", "before")
    if position not in ("before", "after"):
        raise TaskError(f"task '{name}': instruction_position must be 'before' or 'after', got {position!r}")
    return Task(
        name=name,
        fields=fields,
        templates=tuple(templates),
        source=source,
        formats=tuple(formats or _default_formats(source, options_field, rationale_field, inverted)),
        family="yaml",
        options_field=options_field,
        rationale_field=rationale_field,
        inverted_templates=tuple(inverted),
        instruction_first=position == "before",
        max_shots=_number(spec, "max_shots", 3, int),
        fewshot_budget=_number(spec, "fewshot_budget", 512, int),
        metric=spec.get("metric", "rouge" if kind == "niv2" else "exact_match"),
        origin=origin,
    )


def _template(spec: Any, what: str) -> Template:
    spec = _check_keys(spec, TEMPLATE_KEYS, f"{what}: template")
    for key in ("id", "input"):
        if not isinstance(spec.get(key), str):
            raise TaskError(f"{what}: every template needs a string '{key}'")
    for key, value in spec.items():
        if not isinstance(value, str) and not (key == "target" and isinstance(value, (int, float))):
            raise TaskError(f"{what}, template '{spec['id']}': '{key}' must be a string, got {show(value)}")
    return Template(**{k: str(v) for k, v in spec.items()})


def _encoding(spec: dict[str, Any], what: str) -> str | None:
    return None if spec.get("encoding") is None else check_encoding(spec["encoding"], f"{what}encoding")


def _hf_shorthand(spec: dict[str, Any], what: str) -> dict[str, Any]:
    """``{hf: NAME_OR_PATH, split: S, streaming: ...}`` is ``{type: hf, path: NAME_OR_PATH, splits: {train: S}}``
    (``split``: the dataset's split the task trains on)."""
    if "hf" not in spec:
        if "split" in spec:
            raise TaskError(f"{what}: 'split' goes with 'hf: NAME' (other sources map theirs with 'splits')")
        return spec
    both = [key for key in ("type", "path", "splits") if key in spec]
    if both:
        raise TaskError(f"{what}: 'hf: NAME' names the dataset and its type; drop {', '.join(repr(k) for k in both)}")
    out = {k: v for k, v in spec.items() if k not in ("hf", "split")}
    out.update(type="hf", path=spec["hf"])
    if "split" in spec:
        out["splits"] = {"train": spec["split"]}
    return out


def _source(spec: dict[str, Any], kind: str, base: Path, fields: tuple[str, ...], targets: list[str],
            encoding: str | None) -> FileSource:
    path = _place(base, _name(spec, "path", "source: "))
    common = {"holdout": _mapping(spec, "holdout", "source: ", int), "on_bad_record": spec.get("on_bad_record"),
              "encoding": encoding}
    if kind == "niv2":
        return niv2.Niv2Source(path, **common)
    checks = {"fields": fields, "target_fields": targets, "columns": _mapping(spec, "columns", "source: ", str), **common}
    splits = _mapping(spec, "splits", "source: ", str)
    if kind == "hf_disk":
        return HfDiskSource(path, split_names={"train": "train", **splits}, **checks)
    if kind == "hf":
        streaming = spec.get("streaming", True)
        if not isinstance(streaming, bool):
            raise TaskError(f"source: 'streaming' must be true or false, got {show(streaming)}")
        return HfStreamSource(_name(spec, "path", "source: "), base, split_names={"train": "train", **splits},
                              streaming=streaming, **checks)
    return TableSource({"train": path, **{split: _place(base, p) for split, p in splits.items()}}, **checks)


def _place(base: Path, ref: str) -> Path:
    """Where a file or folder a YAML names is read: relative to the YAML's folder, or a URL's local copy
    (``mixtures/storage/staged.py``: one per node, staged again when the objects change)."""
    return staged(ref) if is_remote(ref) else base / ref


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
        raise TaskError(f"mixture '{name}': 'members' must be a non-empty list, got {show(members)}")
    return Mixture(name, [_member(m, base, resolve, f"mixture '{name}'") for m in members])


def _member(spec: Any, base: Path, resolve: Resolve, what: str) -> tuple[Task | Mixture, Rate]:
    spec = _check_keys(spec, MEMBER_KEYS, f"{what}: member")
    kinds = [k for k in MEMBER_KINDS if k in spec]
    if len(kinds) != 1:
        raise TaskError(f"{what}: a member names exactly one of {list(MEMBER_KINDS)}, got {show(spec)}")
    kind, ref = kinds[0], _name(spec, kinds[0], f"{what}: member ")
    rate = _rate(spec.get("rate"))
    policy = {"on_bad_record": spec.get("on_bad_record")}
    for key, kinds in MEMBER_SOURCE_KEYS.items():
        if key in spec and kind not in kinds:
            raise TaskError(f"{what}: set {key} in the source of the task it names, not on the member"
                            if kind in ("task", "mixture") else f"{what}: a {kind} member takes no {key}")
    encoding = {"encoding": _encoding(spec, f"{what}: ")}
    if kind == "flan_jsonl":
        return flan_mixture(_place(base, ref), Path(ref).stem, _rate(spec.get("task_rate")), **policy, **encoding), rate
    if kind == "flan_collection":
        return FlanCollection(_place(base, ref), **policy).mixture("flan2022", run_policy=True), rate
    if kind == "niv2":
        return niv2.niv2_mixture(_place(base, ref), Path(ref).name, _rate(spec.get("task_rate"), cap=5000), **policy,
                                 **encoding), rate
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
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (kind is int and value != int(value))):
        raise TaskError(f"'{key}' must be a{'n integer' if kind is int else ' finite number'}, got {show(value)}")
    return kind(value)
