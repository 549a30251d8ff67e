"""The jinja2 sandbox templates render in, with limits on what a render may cost.

The sandbox already blocks attribute access to Python internals and caps each
``range`` at 100,000 items. On top of it (the limits and the size estimates are
in ``mixtures/render_cost.py``):

- ``*``, ``**``, ``+``, ``%``, ``~``, ``str.format``/``format_map``, the padding and
  joining ``str`` methods (``ljust``, ``center``, ``replace``, ``join``, ...) and
  filters (``center``, ``indent``, ``replace``, ``join``, ``format``, ...) are checked
  before they run: no result over ``MAX_RENDERED_CHARS`` items (an integer: over
  ``MAX_INT_BITS`` bits), and no more than ``MAX_WORK_CHARS`` characters made by
  them in one render;
- loop iterations, calls (macros included; each counts as ``CALL_ITEMS``) and
  ``range`` items of one render count against ``MAX_LOOP_ITEMS`` together, so
  nested loops over a long field, or macros that call themselves, stop within a
  bounded time;
- nothing is computed while a template compiles (jinja's constant folding is
  off, so ``{{ 9 ** 9 ** 9 }}`` cannot stall loading a task), and
  :func:`check_constants` applies the same checks to constant expressions at
  load time, so such a template is refused when its task is built;
- a value printed, joined with ``~`` or turned into text by a filter (``string``, ``pprint``, ``tojson``)
  is measured before it is turned into text (a list holding one long string a
  million times is cheap to hold, not to print);
- a render stops once its text passes ``MAX_RENDERED_CHARS`` characters; ``lipsum`` is gone.

A template that exceeds a limit raises :class:`TemplateLimitError`; the task
layer reports it with the task and template id. Templates render without
autoescaping (``~`` joins plain strings).
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Iterator

import jinja2
from jinja2 import nodes
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, safe_range

from flanforge.mixtures import render_cost
from flanforge.mixtures.render_cost import (  # noqa: F401  (TemplateLimitError and the limits are this module's API)
    MAX_INT_BITS, MAX_LOOP_ITEMS, MAX_RENDERED_CHARS, TemplateLimitError, charge_items, check_binop, check_size,
)

_LOOP, _CONCAT = "_flanforge_loop_items", "_flanforge_concat"  # globals the compiled templates call


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the limits above."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any):
        super().__init__(optimized=False, finalize=_checked_output, **kwargs)  # no constant folding at compile time
        self.globals.pop("lipsum", None)
        self.globals.update({"range": _counted_range, _LOOP: _counted_items, _CONCAT: _checked_concat})
        for name in render_cost.FILTERS:
            self.filters[name] = _checked_filter(self.filters[name], name)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        charge_items(render_cost.CALL_ITEMS)
        args = render_cost.check_str_method(obj, args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        fmt = super().wrap_str_format(value)
        if fmt is None:
            return None

        def checked(*args: Any, **kwargs: Any) -> str:
            positional, named = ((), args[0]) if value.__name__ == "format_map" and args else (args, kwargs)
            check_size(f"str.{value.__name__}", render_cost.format_size(value.__self__, positional, named))
            return fmt(*args, **kwargs)

        return checked

    def _generate(self, source: nodes.Template, name: Any, filename: Any, defer_init: bool = False) -> Any:
        """Compile with every loop's iterable counted and every ``~`` checked (see the module doc)."""
        for loop in source.find_all(nodes.For):
            loop.iter = _global_call(_LOOP, [loop.iter], loop.iter.lineno)
        for concat in source.find_all(nodes.Concat):
            concat.nodes = [_global_call(_CONCAT, concat.nodes, concat.lineno)]
        return super()._generate(source, name, filename, defer_init)


def _global_call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None, lineno=lineno)


def _counted_items(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        charge_items(1)
        yield item


def _checked_concat(*values: Any) -> str:
    check_size("'~'", sum(render_cost.text_size(v) for v in values))
    return "".join(map(str, values))


def _checked_output(value: Any) -> Any:
    """What ``{{ ... }}`` prints, checked before it is turned into text."""
    if not isinstance(value, str):
        check_size("printing a value", render_cost.text_size(value))
    return value


def _checked_filter(fn: Any, name: str) -> Any:
    """``fn`` (a jinja filter) checked with its size estimate; keeps what jinja passes it first."""
    passes = getattr(fn, "jinja_pass_arg", None) is not None

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        first, value, rest = args[:passes], args[passes], args[passes + 1:]
        value = render_cost.as_list(value) if name == "join" else value
        check_size(f"filter '{name}'", render_cost.FILTERS[name](value, *rest, **kwargs))
        return fn(*first, value, *rest, **kwargs)

    return checked


def _counted_range(*args: int) -> range:
    """The sandbox's ``range``, its items counted; one over the sandbox's cap is a :class:`TemplateLimitError`."""
    try:
        numbers = safe_range(*args)
    except OverflowError:
        raise TemplateLimitError(f"range({', '.join(map(str, args))}) has more than {MAX_RANGE:,} items") from None
    charge_items(len(numbers))
    return numbers


def render(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Render ``template`` within one render's budget, stopping once the text passes ``MAX_RENDERED_CHARS``."""
    size, parts = 0, []
    token = render_cost.start_budget()
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise TemplateLimitError(f"renders more than {MAX_RENDERED_CHARS:,} characters")
            parts.append(chunk)
    finally:
        render_cost.end_budget(token)
    return "".join(parts)


def check_constants(tree: nodes.Template) -> None:
    """Apply the checks above to every operation whose operands are constants (at load time)."""
    for node in tree.find_all((nodes.BinExpr, nodes.Concat, nodes.Call, nodes.Filter)):
        try:
            _constant(node)
        except (nodes.Impossible, TypeError, ValueError, ArithmeticError) as err:
            if isinstance(err, TemplateLimitError):
                raise
            continue  # not constant, or fails at render time with its own message


def _constant(node: nodes.Node) -> Any:
    """The value of a constant expression (literals, operators, ``~``, ``str`` methods, ``range``), each
    operation checked before it is computed; a checked filter of constants is checked and then
    :class:`jinja2.nodes.Impossible`, as is anything else."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [_constant(item) for item in node.items]
    if isinstance(node, nodes.BinExpr) and node.operator in LimitedEnvironment.intercepted_binops:
        left, right = _constant(node.left), _constant(node.right)
        check_binop(node.operator, left, right)
        return _BINOPS[node.operator](left, right)
    if isinstance(node, nodes.Concat):
        return _checked_concat(*(_constant(n) for n in node.nodes))
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and not node.dyn_args and not node.dyn_kwargs:
        owner, args = _constant(node.node.node), [_constant(a) for a in node.args]
        kwargs = {kw.key: _constant(kw.value) for kw in node.kwargs}
        method = getattr(owner, node.node.attr) if isinstance(owner, str) else None
        if method is None or node.node.attr not in {*render_cost.STR_METHODS, "format", "format_map"}:
            raise nodes.Impossible()
        if node.node.attr in ("format", "format_map"):
            check_size(f"str.{node.node.attr}", render_cost.format_size(owner, tuple(args), kwargs))
        render_cost.check_str_method(method, tuple(args), kwargs)
        return method(*args, **kwargs)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
        return _counted_range(*(_constant(a) for a in node.args))
    if isinstance(node, nodes.Filter) and node.name in render_cost.FILTERS and node.node is not None:
        value, args = _constant(node.node), [_constant(a) for a in node.args]
        check_size(f"filter '{node.name}'", render_cost.FILTERS[node.name](value, *args))
    raise nodes.Impossible()


_BINOPS = {"*": lambda a, b: a * b, "**": lambda a, b: a**b, "+": lambda a, b: a + b, "%": lambda a, b: a % b}
