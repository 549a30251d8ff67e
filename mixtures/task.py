"""Task and Template: a dataset's fields rendered through instruction phrasings.

Templates are jinja2 source compiled in a *sandboxed* environment, so a
template cannot reach Python internals. Every template is checked against the
task's declared fields when the task is built: a template that names a field
the task does not have is an error naming task, template id and field.

A task's records are raw fields, never text: :meth:`Task.render` turns one
into an :class:`Example` with a template and a format (see ``formats.py``)
drawn from the caller's RNG, so every epoch can see another phrasing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import jinja2
from jinja2 import meta

from flanforge.errors import TaskError, did_you_mean
from flanforge.names import checked_name
from flanforge.mixtures import sandbox
from flanforge.mixtures.formats import FORMATS, Format, Parts, Style, block, compose, get_format, whitespace_tokens

_ENV = sandbox.LimitedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)

SPLITS = ("train", "exemplars", "validation")
"""``exemplars`` is the few-shot pool: disjoint from ``train``, so no exemplar is ever a training target."""

CHOICES_VARIABLE = "answer_choices"
"""What a template with ``choices`` (promptsource's ``answer_choices``) calls the rendered list."""


TOO_DEEP = "nested too deeply to parse (expressions, blocks or filters inside one another)"


@lru_cache(maxsize=None)
def _compiled(source: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except RecursionError:
        raise sandbox.TemplateLimitError(TOO_DEEP) from None


@lru_cache(maxsize=None)
def _variables(source: str) -> frozenset[str]:
    try:
        tree = _ENV.parse(source)
        sandbox.check_constants(tree)  # a constant too big to compute is refused when the task loads
        return frozenset(meta.find_undeclared_variables(tree))
    except RecursionError:  # jinja parses and walks templates recursively
        raise sandbox.TemplateLimitError(TOO_DEEP) from None


@dataclass(frozen=True)
class Template:
    """One phrasing of a task.

    ``instruction`` (optional) is kept apart from ``input`` so the instruction
    can be placed before or after the input; ``choices`` is a jinja string of
    answer choices separated by ``|||`` (promptsource's ``answer_choices``),
    rendered first and available to ``input`` and ``target`` as
    ``answer_choices``.
    """

    id: str
    input: str
    target: str = "{{ answer }}"
    instruction: str = ""
    choices: str | None = None
    original_task: bool = True
    """promptsource's ``metadata.original_task``: evaluation renders only templates where it holds
    (as T0 scored them); the others train but never evaluate."""

    def fields(self) -> set[str]:
        """Names the template reads from a record (raises ``jinja2.TemplateSyntaxError`` or
        :class:`~flanforge.mixtures.sandbox.TemplateLimitError`)."""
        sources = [self.instruction, self.input, self.target, self.choices or ""]
        used = set().union(*(_variables(s) for s in sources))
        return used - {CHOICES_VARIABLE} if self.choices is not None else used

    def target_fields(self) -> set[str]:
        """Names the target reads: a record with any of them empty has no answer."""
        return set(_variables(self.target)) - {CHOICES_VARIABLE}

    def render(self, record: dict[str, Any]) -> tuple[str, str, str, list[str] | None]:
        """``(instruction, input, target, choices)`` for ``record``."""
        choices = None
        if self.choices is not None:
            choices = [c.strip() for c in sandbox.render(_compiled(self.choices), record).split("|||")]
            record = {**record, CHOICES_VARIABLE: choices}
        texts = (sandbox.render(_compiled(s), record).strip() for s in (self.instruction, self.input, self.target))
        return (*texts, choices)


@dataclass(frozen=True)
class Example:
    """A rendered training example with what produced it (for logging)."""

    inputs: str
    targets: str
    task: str
    template_id: str
    format: str
    answer: str = ""
    """The query's target before the format shaped it (no rationale): what evaluation compares with."""
    options: tuple[str, ...] = ()
    """The query's answer options (rank classification scores each)."""


RecordSource = Callable[[str], Sequence[dict[str, Any]]]
"""``split -> records``. A source that skips bad records counts them in an attribute ``bad_records``."""


@dataclass
class Task:
    """A named dataset with a field schema, instruction templates and the formats it may be rendered in.

    ``records(split)`` returns the raw records (fields, not text); rendering is
    done online so every epoch can draw another template.
    """

    name: str
    fields: tuple[str, ...]
    templates: tuple[Template, ...]
    source: RecordSource
    formats: tuple[str, ...] = ("zs_noopt",)
    """Formats a rendering draws from (uniformly); see ``formats.FORMATS``."""
    family: str = ""
    options_field: str | None = None
    """A field holding the answer options (a list, or a string split on ``|||``); needed by ``*_opt`` formats."""
    rationale_field: str | None = None
    """A field holding a worked rationale; needed by ``*_cot`` formats."""
    inverted_templates: tuple[Template, ...] = ()
    """Templates that give the answer and ask for the input; needed by ``*_inv`` formats."""
    instruction_first: bool = True
    """Put the instruction before the input (the default: it works better) or after it."""
    max_shots: int = 3
    """Few-shot formats draw 1..max_shots exemplars, then drop whole ones to fit ``fewshot_budget``."""
    fewshot_budget: int = 512
    """Tokens (inputs + targets) a few-shot example may take; the renderer's caller may pass its own."""
    metric: str = "exact_match"
    """How evaluation scores the task: a metric of evaluation's registry (``launcher/evaluation/metrics/``:
    ``accuracy``, rank classification over the answer options; ``exact_match`` and ``rouge`` score a greedy
    generation). Evaluation checks the name (and ``flanforge train`` before any rank starts)."""
    format_field: str | None = None
    """For records that are already rendered (Flan-collection exports): the field naming their format."""
    origin: str = ""
    """Where the task is defined (its YAML file), for messages; empty for built-in and collection tasks."""

    def __post_init__(self) -> None:
        self.name = checked_name(self.name, "task")
        self.fields = tuple(self.fields)
        self.templates = tuple(self.templates)
        self.inverted_templates = tuple(self.inverted_templates)
        self.formats = tuple(self.formats)
        if not self.templates:
            raise TaskError(f"task '{self.name}': has no templates")
        if not isinstance(self.metric, str) or not self.metric:
            raise TaskError(f"task '{self.name}': metric must be a metric's name, got {self.metric!r}")
        if self.max_shots < 1 or self.fewshot_budget < 1:
            raise TaskError(f"task '{self.name}': max_shots and fewshot_budget must be at least 1")
        seen: set[str] = set()
        for tpl in self.templates + self.inverted_templates:
            if tpl.id in seen:
                raise TaskError(f"task '{self.name}': duplicate template id '{tpl.id}'")
            seen.add(tpl.id)
            self._check_template(tpl)
        for name in (self.options_field, self.rationale_field, self.format_field):
            if name is not None and name not in self.fields:
                raise TaskError(f"task '{self.name}': '{name}' is not one of the task's fields {list(self.fields)}")
        for fmt_name in self.formats:
            self._check_format(fmt_name)

    def _check_template(self, tpl: Template) -> None:
        try:
            used = tpl.fields()
        except jinja2.TemplateSyntaxError as err:
            raise TaskError(f"task '{self.name}', template '{tpl.id}': syntax error at line {err.lineno}: {err.message}") from None
        except sandbox.TemplateLimitError as err:
            raise TaskError(f"task '{self.name}', template '{tpl.id}': {err}") from None
        for name in sorted(used - set(self.fields)):
            raise TaskError(
                f"task '{self.name}', template '{tpl.id}': field '{name}' is not one of "
                f"the task's fields {list(self.fields)}{did_you_mean(name, self.fields, cutoff=0.6)}"
            )

    def _check_format(self, name: str) -> None:
        try:
            fmt = get_format(name)
        except ValueError as err:
            raise TaskError(f"task '{self.name}': {err}") from None
        if self.format_field is not None:
            return  # records come rendered; the format only labels them
        missing = None
        if fmt.options and self.options_field is None and any(t.choices is None for t in self.templates):
            missing = "an options_field (or answer choices on every template)"
        elif fmt.cot and self.rationale_field is None:
            missing = "a rationale_field"
        elif fmt.inverted and not self.inverted_templates:
            missing = "inverted_templates"
        if missing:
            raise TaskError(f"task '{self.name}': format '{name}' needs {missing}")

    def records(self, split: str = "train") -> Sequence[dict[str, Any]]:
        if split not in SPLITS:
            raise TaskError(f"task '{self.name}': unknown split '{split}' (splits: {', '.join(SPLITS)})")
        return self.source(split)

    def num_examples(self, split: str = "train") -> int:
        return len(self.records(split))

    @property
    def bad_records(self) -> int:
        """Malformed source records skipped so far (``on_bad_record: skip``)."""
        return int(getattr(self.source, "bad_records", 0))

    def render(
        self,
        record: dict[str, Any],
        rng: random.Random,
        index: int = -1,
        *,
        count_tokens: Callable[[str], int] | None = None,
        format_name: str | None = None,
        fewshot_budget: int | None = None,
        instruction_first: bool | None = None,
        shots: int | None = None,
    ) -> Example:
        """Render ``record``; every choice (format, template, exemplars, delimiters) is drawn from ``rng``.

        ``format_name`` forces a format (evaluation, ``inspect --render``; records
        that come rendered keep their own); ``shots`` fixes how many exemplars a
        few-shot format draws (evaluation; default 1..max_shots);
        ``count_tokens`` measures the few-shot budget (whitespace pieces when
        None). A few-shot example whose first exemplar alone overflows the
        budget is rendered in the zero-shot counterpart format, and says so.
        """
        if self.format_field is not None:
            tpl = rng.choice(self.templates)
            parts = self._parts(tpl, record, f"example {index}")
            inputs = "\n\n".join(s for s in (parts.instruction, parts.input) if s)
            return Example(inputs, parts.target, self.name, tpl.id, str(record[self.format_field]), parts.target,
                           tuple(parts.options))
        fmt = self._format(format_name or rng.choice(self.formats))
        tpl = rng.choice(self.inverted_templates if fmt.inverted else self.templates)
        style = Style.draw(rng)
        parts = self._parts(tpl, record, f"example {index}")
        query = block(parts, fmt, style)
        exemplars = self._shots(tpl, fmt, style, rng, parts.instruction, shots) if fmt.few_shot else []
        fmt, inputs, targets = compose(
            parts.instruction,
            query,
            exemplars,
            fmt,
            style,
            self.instruction_first if instruction_first is None else instruction_first,
            fewshot_budget or self.fewshot_budget,
            count_tokens or whitespace_tokens,
        )
        return Example(inputs, targets, self.name, tpl.id, fmt.name, parts.target, tuple(parts.options))

    def _format(self, name: str) -> Format:
        if name not in self.formats:
            raise TaskError(f"task '{self.name}': format '{name}' is not one of its formats {list(self.formats)}")
        return FORMATS[name]

    def _shots(self, tpl: Template, fmt: Format, style: Style, rng: random.Random, instruction: str,
               count: int | None = None) -> list[tuple[str, str]]:
        """``count`` (default: 1..max_shots) solved exemplars from the ``exemplars`` split, rendered like the query.

        The instruction is stated once for all of them, so it must not depend on the record.
        """
        pool = self.records("exemplars")
        if not pool:
            raise TaskError(f"task '{self.name}': format '{fmt.name}' needs an 'exemplars' split, which is empty")
        shots = []
        count = rng.randint(1, self.max_shots) if count is None else count
        for i in rng.sample(range(len(pool)), min(count, len(pool))):
            parts = self._parts(tpl, pool[i], f"exemplar {i}")
            if parts.instruction != instruction:
                raise TaskError(
                    f"task '{self.name}', template '{tpl.id}': the instruction differs between records; "
                    "few-shot formats need one instruction for the whole task (move record fields to the input)"
                )
            shots.append(block(parts, fmt, style))
        return shots

    def _parts(self, tpl: Template, record: dict[str, Any], where: str) -> Parts:
        try:
            instruction, x, y, choices = tpl.render(record)
            options = choices if choices is not None else _options(record, self.options_field)
            rationale = str(record[self.rationale_field]).strip() if self.rationale_field else ""
        except Exception as err:  # a user template may raise anything; say which one and where
            raise TaskError(
                f"task '{self.name}', template '{tpl.id}': cannot render {where}: {type(err).__name__}: {err}"
            ) from None
        if not y:
            raise TaskError(f"task '{self.name}', template '{tpl.id}': {where} renders an empty target")
        return Parts(instruction, x, y, options, rationale)


def _options(record: dict[str, Any], name: str | None) -> list[str]:
    if name is None:
        return []
    value = record[name]
    if isinstance(value, str):
        return [o.strip() for o in value.split("|||")]
    return [str(o) for o in value]
