"""What a template operation would cost, checked before it runs, and the budget of one render.

Every operation that can make a big string, list or integer from small inputs is
estimated here before the sandbox (``mixtures/sandbox.py``) lets it run: ``*``,
``**``, ``+``, ``~``, ``%`` formatting, ``str.format``, the padding and joining
string methods and filters. One result may not exceed :data:`MAX_RENDERED_CHARS`
items (an integer: :data:`MAX_INT_BITS` bits); the results of one render together
may not exceed :data:`MAX_WORK_CHARS` characters, and its loop iterations, calls
and ``range`` items together :data:`MAX_LOOP_ITEMS` (nested loops or macros that
print nothing cannot spin for hours). A breach is a :class:`TemplateLimitError`.
"""

from __future__ import annotations

import contextvars
import math
import re
import string
from typing import Any, Callable

MAX_RENDERED_CHARS = 1_000_000
"""Characters (or list items) one render of one template part, or one operation in it, may produce."""
MAX_WORK_CHARS = 20_000_000
"""Characters the checked operations of one render may produce together."""
MAX_INT_BITS = 4096
"""Bits an integer computed by ``*`` or ``**`` may have."""
MAX_LOOP_ITEMS = 1_000_000
"""Loop iterations, calls and ``range`` items one render may run through together."""
CALL_ITEMS = 20
"""What one call (a macro's above all) counts for: it costs about as much as 20 loop iterations."""

_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("render_budget", default=None)
_SPEC_NUMBER = re.compile(r"%[#0 +\-]*(\d*|\*)(?:\.(\d*|\*))?[a-zA-Z%]")


class TemplateLimitError(ValueError):
    """A template asked for more than a render may cost."""


def start_budget() -> contextvars.Token:
    """Open the budget of one render ([loop items left, characters left]); close it with :func:`end_budget`."""
    return _BUDGET.set([MAX_LOOP_ITEMS, MAX_WORK_CHARS])


def end_budget(token: contextvars.Token) -> None:
    _BUDGET.reset(token)


def charge_items(n: int) -> None:
    left = _BUDGET.get()
    if left is not None:
        left[0] -= n
        if left[0] < 0:
            raise TemplateLimitError(f"its loops, calls and ranges run over more than {MAX_LOOP_ITEMS:,} items "
                                     "in one render")


def check_size(what: str, size: float) -> None:
    """Refuse an operation whose result would hold ``size`` characters or items; charge it to the render."""
    if size > MAX_RENDERED_CHARS:
        raise TemplateLimitError(f"{what} would make {int(size):,} characters or items (limit {MAX_RENDERED_CHARS:,})")
    left = _BUDGET.get()
    if left is not None:
        left[1] -= int(size)
        if left[1] < 0:
            raise TemplateLimitError(f"its operations make more than {MAX_WORK_CHARS:,} characters in one render")


def _bits(value: Any) -> float:
    return abs(value).bit_length() if isinstance(value, int) else 64.0


def text_size(value: Any, limit: int = MAX_WORK_CHARS) -> int:
    """An upper bound of ``len(str(value))`` (containers nested or not), computed no further than past ``limit``:
    a list holding one long string a million times is cheap to hold but not to print."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        total = 2
        for item in (value.items() if isinstance(value, dict) else value):
            total += text_size(item, limit - total) + 4  # quotes, separator
            if total > limit:
                break
        return total
    return len(str(value))


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Raise :class:`TemplateLimitError` when ``left <operator> right`` would be too big to compute."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                check_size(f"'*' repeating {len(seq):,} items {n:,} times", len(seq) * n)
        if isinstance(left, int) and isinstance(right, int) and _bits(left) + _bits(right) > MAX_INT_BITS:
            raise TemplateLimitError(f"'*' of two integers over {MAX_INT_BITS} bits")
    elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
        if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise TemplateLimitError(f"'**' result over {MAX_INT_BITS} bits")
    elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        check_size("'+'", len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        check_size("'%' formatting", percent_size(left, right))


def _ints(values: Any) -> list[int]:
    items = values if isinstance(values, (tuple, list)) else [values]
    return [v for v in items if isinstance(v, int) and not isinstance(v, bool)]


def _args_size(values: Any) -> int:
    items = values.values() if isinstance(values, dict) else values if isinstance(values, (tuple, list)) else [values]
    return sum(text_size(v) for v in items)


def percent_size(fmt: str, args: Any) -> int:
    """An upper bound of ``fmt % args``: the text, every width and precision, and the arguments."""
    size = len(fmt) + _args_size(args)
    for match in _SPEC_NUMBER.finditer(fmt):
        for number in match.groups():
            if number == "*":
                size += sum(_ints(args))
            elif number:
                size += int(number)
    return size


def format_size(fmt: str, args: tuple, kwargs: dict[str, Any]) -> int:
    """An upper bound of ``fmt.format(*args, **kwargs)``: widths and precisions of every field
    (a nested ``{}`` in a spec: any integer argument), and the arguments."""
    size = len(fmt) + _args_size(args) + _args_size(kwargs)
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return size  # str.format raises its own error
    for _, _, spec, _ in fields:
        size += sum(int(n) for n in re.findall(r"\d+", spec or ""))
        if spec and "{" in spec:
            size += sum(_ints(list(args) + list(kwargs.values())))
    return size


def _pad(s: str, width: Any = 80, *_: Any, **__: Any) -> int:
    return max(text_size(s), width if isinstance(width, int) else 0)


def _indent(s: str, width: Any = 4, *_: Any, **__: Any) -> int:
    unit = width if isinstance(width, int) else len(str(width))
    lines = s.count("\n") + 1 if isinstance(s, str) else text_size(s)  # not a string: at most a line per character
    return text_size(s) + unit * lines


def _replace(s: str, old: Any = "", new: Any = "", count: Any = -1, *_: Any, **__: Any) -> int:
    if not isinstance(s, str):  # converted to text first: estimate without converting
        return text_size(s) + (text_size(s) + 1) * text_size(new)
    old, new = str(old), str(new)
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * len(new)


def _join(items: Any, sep: Any = "", *_: Any, **__: Any) -> int:
    return sum(text_size(x) for x in items) + len(str(sep)) * max(len(items) - 1, 0)


def _join_method(sep: str, items: Any = (), *_: Any, **__: Any) -> int:
    return _join(items, sep)


def _expandtabs(s: str, tabsize: Any = 8, *_: Any, **__: Any) -> int:
    return len(s) + s.count("\t") * (tabsize if isinstance(tabsize, int) else 8)


STR_METHODS: dict[str, Callable[..., int]] = {
    "ljust": _pad, "rjust": _pad, "center": _pad, "zfill": _pad, "replace": _replace,
    "join": _join_method, "expandtabs": _expandtabs,
}
"""``str`` methods that can make a big string from small arguments -> the size of their result."""
FILTERS: dict[str, Callable[..., int]] = {
    "center": _pad, "indent": _indent, "replace": _replace, "join": _join,
    "format": lambda fmt, *args, **kwargs: percent_size(str(fmt), kwargs or args),
    **dict.fromkeys(("string", "pprint", "tojson"), lambda value, *_, **__: 2 * text_size(value)),
}
"""Filters that can make a big string from small arguments -> the size of their result."""


def check_str_method(method: Any, args: tuple, kwargs: dict[str, Any]) -> tuple:
    """Refuse a call of a ``str`` method from :data:`STR_METHODS` whose result would be too big;
    returns its arguments (an iterator to join made a list, so the estimate does not consume it)."""
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if isinstance(owner, str) and name in STR_METHODS:
        if name == "join" and args:
            args = (as_list(args[0]), *args[1:])
        check_size(f"str.{name}", STR_METHODS[name](owner, *args, **kwargs))
    return args


def as_list(value: Any) -> Any:
    """``value``, or a list of its items when it is an iterator (read once)."""
    return value if isinstance(value, (str, list, tuple, dict)) else list(value)
