"""Task and Template: a dataset's fields rendered through instruction phrasings.

Templates are jinja2 source compiled in a *sandboxed* environment, so a
template cannot reach Python internals. Every template is checked against the
task's declared fields when the task is built: a template that names a field
the task does not have is an error naming task, template id and field.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


class TaskError(ValueError):
    """A task, template or record that cannot be used; the message names it."""


@dataclass(frozen=True)
class Template:
    """One phrasing of a task: jinja2 source for the input and for the target."""

    id: str
    input: str
    target: str = "{{ answer }}"

    def fields(self) -> set[str]:
        """Names the template reads from a record."""
        names: set[str] = set()
        for source in (self.input, self.target):
            names |= meta.find_undeclared_variables(_ENV.parse(source))
        return names

    def render(self, record: dict[str, Any]) -> tuple[str, str]:
        return _compiled(self.input).render(record).strip(), _compiled(self.target).render(record).strip()


_CACHE: dict[str, jinja2.Template] = {}


def _compiled(source: str) -> jinja2.Template:
    tpl = _CACHE.get(source)
    if tpl is None:
        tpl = _CACHE[source] = _ENV.from_string(source)
    return tpl


@dataclass(frozen=True)
class Example:
    """A rendered training example with what produced it (for logging)."""

    inputs: str
    targets: str
    task: str
    template_id: str
    format: str


RecordSource = Callable[[str], Sequence[dict[str, Any]]]


@dataclass
class Task:
    """A named dataset with a field schema and several instruction templates.

    ``records(split)`` returns the raw records (fields, not text); rendering is
    done online so every epoch can draw another template.
    """

    name: str
    fields: tuple[str, ...]
    templates: tuple[Template, ...]
    source: RecordSource
    formats: tuple[str, ...] = ("zs_noopt",)
    family: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.templates:
            raise TaskError(f"task '{self.name}': has no templates")
        seen: set[str] = set()
        for tpl in self.templates:
            if tpl.id in seen:
                raise TaskError(f"task '{self.name}': duplicate template id '{tpl.id}'")
            seen.add(tpl.id)
            try:
                used = tpl.fields()
            except jinja2.TemplateSyntaxError as err:
                raise TaskError(f"task '{self.name}', template '{tpl.id}': syntax error: {err}") from None
            for name in sorted(used - set(self.fields)):
                near = difflib.get_close_matches(name, self.fields, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise TaskError(
                    f"task '{self.name}', template '{tpl.id}': field '{name}' is not one of "
                    f"the task's fields {list(self.fields)}{hint}"
                )

    def records(self, split: str = "train") -> Sequence[dict[str, Any]]:
        return self.source(split)

    def num_examples(self, split: str = "train") -> int:
        return len(self.records(split))

    def render(self, record: dict[str, Any], rng: random.Random, index: int = -1) -> Example:
        """Render ``record`` with a template and format drawn from ``rng``."""
        tpl = rng.choice(self.templates)
        fmt = rng.choice(self.formats)
        try:
            inputs, targets = tpl.render(record)
        except jinja2.TemplateError as err:
            raise TaskError(
                f"task '{self.name}', template '{tpl.id}': cannot render example {index}: {err}"
            ) from None
        return Example(inputs, targets, self.name, tpl.id, fmt)

    def iter_examples(self, split: str, seed: int) -> Iterator[Example]:
        rng = random.Random(f"{seed}/{self.name}")
        for i, record in enumerate(self.records(split)):
            yield self.render(record, rng, i)
