"""The jinja2 sandbox templates render in, with limits on what a render may cost.

The sandbox already blocks attribute access to Python internals and caps
``range``. On top of it:

- ``*`` and ``**`` are checked before they run: a repeated string or list may
  not exceed ``MAX_RENDERED_CHARS`` items, an integer product or power may not
  exceed ``MAX_INT_BITS`` bits;
- nothing is computed while a template compiles (jinja's constant folding is
  off, so ``{{ 9 ** 9 ** 9 }}`` cannot stall loading a task), and
  :func:`check_constants` applies the same limits to constant operands at load
  time, so such a template is refused when its task is built;
- a render stops once its text passes ``MAX_RENDERED_CHARS`` characters, the
  ``range`` objects of one render may hold at most ``MAX_RANGE_ITEMS`` items
  together (nested loops that print nothing cannot spin for hours), and
  filters that pad to a width refuse widths beyond that; ``lipsum`` is gone.

A template that exceeds a limit raises :class:`TemplateLimitError`; the task
layer reports it with the task and template id.
"""

from __future__ import annotations

import contextvars
import math
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

MAX_RENDERED_CHARS = 1_000_000
"""Characters one render of one template part may produce."""
MAX_INT_BITS = 4096
"""Bits an integer computed by ``*`` or ``**`` may have."""
MAX_RANGE_ITEMS = 1_000_000
"""Items the ``range`` calls of one render may produce together."""
_RANGE_LEFT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("range_left", default=None)
_WIDTH_FILTERS = {"center": 1, "indent": 1, "wordwrap": 1, "truncate": 1}  # filter -> index of its width argument


class TemplateLimitError(ValueError):
    """A template asked for more than a render may cost."""


def _bits(value: Any) -> float:
    return abs(value).bit_length() if isinstance(value, int) else 64.0


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Raise :class:`TemplateLimitError` when ``left <operator> right`` would be too big to compute."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_RENDERED_CHARS:
                raise TemplateLimitError(f"'*' would repeat {len(seq)} items {n} times (limit {MAX_RENDERED_CHARS:,})")
        if isinstance(left, int) and isinstance(right, int) and _bits(left) + _bits(right) > MAX_INT_BITS:
            raise TemplateLimitError(f"'*' of two integers over {MAX_INT_BITS} bits")
    elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
        if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise TemplateLimitError(f"'**' result over {MAX_INT_BITS} bits")


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the limits above."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **kwargs: Any):
        super().__init__(optimized=False, **kwargs)  # no constant folding at compile time
        self.globals.pop("lipsum", None)
        self.globals["range"] = _counted_range
        for name, position in _WIDTH_FILTERS.items():
            self.filters[name] = _width_checked(self.filters[name], name, position)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _width_checked(fn: Any, name: str, position: int) -> Any:
    def checked(*args: Any, **kwargs: Any) -> Any:
        width = args[position] if len(args) > position else kwargs.get("width", kwargs.get("length", 0))
        if isinstance(width, int) and width > MAX_RENDERED_CHARS:
            raise TemplateLimitError(f"'{name}' width {width:,} is over the limit of {MAX_RENDERED_CHARS:,}")
        return fn(*args, **kwargs)

    return checked


def _counted_range(*args: int) -> range:
    numbers = safe_range(*args)
    left = _RANGE_LEFT.get()
    if left is not None:
        left[0] -= len(numbers)
        if left[0] < 0:
            raise TemplateLimitError(f"its loops run over more than {MAX_RANGE_ITEMS:,} range items in one render")
    return numbers


def render(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Render ``template``, stopping once the text passes ``MAX_RENDERED_CHARS`` (or its ranges
    pass ``MAX_RANGE_ITEMS``)."""
    token = _RANGE_LEFT.set([MAX_RANGE_ITEMS])
    size, parts = 0, []
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise TemplateLimitError(f"renders more than {MAX_RENDERED_CHARS:,} characters")
            parts.append(chunk)
    finally:
        _RANGE_LEFT.reset(token)
    return "".join(parts)


def check_constants(tree: nodes.Template) -> None:
    """Apply :func:`check_binop` to every ``*`` and ``**`` whose operands are constants (at load time)."""
    for node in tree.find_all((nodes.Mul, nodes.Pow)):
        try:
            _constant(node)
        except (nodes.Impossible, TypeError, ArithmeticError):
            continue  # not constant, or fails at render time with its own message


def _constant(node: nodes.Node) -> Any:
    """The value of a constant expression built from literals, ``*`` and ``**`` (checked before each
    operation), or :class:`jinja2.nodes.Impossible` for anything else."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.Mul, nodes.Pow)):
        left, right = _constant(node.left), _constant(node.right)
        check_binop(node.operator, left, right)
        return left * right if node.operator == "*" else left**right
    raise nodes.Impossible()
