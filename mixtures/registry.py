"""Strict registries of tasks and mixtures (seqio-style).

Duplicates are rejected, unknown names are answered with the closest names,
and ``reset()`` empties both registries for tests.
"""

from __future__ import annotations

import difflib
from typing import Callable

from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.task import Task, TaskError

_TASKS: dict[str, Task] = {}
_MIXTURES: dict[str, Mixture | Callable[[], Mixture]] = {}
_BUILTINS_LOADED = False


def _unknown(kind: str, name: str, known: list[str]) -> TaskError:
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(near)}" if near else ""
    return TaskError(f"unknown {kind} '{name}'{hint}")


def register_task(task: Task) -> Task:
    if task.name in _TASKS:
        raise TaskError(f"task '{task.name}' is already registered")
    _TASKS[task.name] = task
    return task


def register_mixture(name: str, mixture: Mixture | Callable[[], Mixture]) -> None:
    """Register a mixture, or a zero-argument factory that builds it on first use."""
    if name in _MIXTURES:
        raise TaskError(f"mixture '{name}' is already registered")
    _MIXTURES[name] = mixture


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from flanforge.mixtures import builtin

        builtin.register_all()


def get_task(name: str) -> Task:
    _ensure_builtins()
    if name not in _TASKS:
        raise _unknown("task", name, list(_TASKS))
    return _TASKS[name]


def get_mixture(name: str) -> Mixture:
    _ensure_builtins()
    if name not in _MIXTURES:
        raise _unknown("mixture", name, list(_MIXTURES))
    entry = _MIXTURES[name]
    if not isinstance(entry, Mixture):
        entry = _MIXTURES[name] = entry()
    return entry


def mixture_names() -> list[str]:
    _ensure_builtins()
    return sorted(_MIXTURES)


def reset(with_builtins: bool = True) -> None:
    """Empty the registries (tests). The built-in suite comes back on the next lookup unless ``with_builtins`` is False."""
    global _BUILTINS_LOADED
    _TASKS.clear()
    _MIXTURES.clear()
    _BUILTINS_LOADED = not with_builtins


def load_mixture(name: str) -> Mixture:
    return get_mixture(name)


def load_mixture(name_or_path: str) -> Mixture:
    """A registered mixture by name (YAML files: coming with the task YAML loader)."""
    return get_mixture(name_or_path)
