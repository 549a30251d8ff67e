"""Strict registries of tasks and mixtures (seqio-style).

Duplicates are rejected, unknown names are answered with the closest names,
and ``reset()`` empties both registries for tests. The built-in suite
(``builtin``, ``builtin_heldout``, ``demo`` and the ``builtin_*`` clusters)
is registered on the first lookup; its records are generated only when
read. :func:`load_mixture` also accepts a task or mixture YAML file, whose
tasks are registered under their names (loading the same file again returns
the same objects), and ``flan2022``: FLAN 2022's mixture over a Flan
collection directory (``data_dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from flanforge.errors import did_you_mean
from flanforge.mixtures.mixture import MAX_DEPTH, Mixture, Rate, origin_of
from flanforge.mixtures.sources import task_yaml
from flanforge.mixtures.sources.base import FileSource, checked_policy
from flanforge.mixtures.sources.flan_collection import CollectionSource, FlanCollection
from flanforge.mixtures.storage import is_remote
from flanforge.mixtures.storage.staged import staged
from flanforge.mixtures.task import Task, TaskError

__all__ = [
    "register_task", "register_mixture", "get_task", "get_mixture", "load_mixture", "task_names",
    "mixture_names", "reset",
]

_TASKS: dict[str, Task] = {}
_MIXTURES: dict[str, Mixture | Callable[[], Mixture]] = {}
_FILES: dict[Path, Task | Mixture] = {}
_LOADING: list[Path] = []  # YAML files being loaded, outermost first (a file met again is a cycle)
_BUILTINS_LOADED = False
_COLLECTIONS: dict[Path, Mixture] = {}
FLAN2022 = "flan2022"


def _unknown(kind: str, name: str, known: list[str]) -> TaskError:
    return TaskError(f"unknown {kind} '{name}'{did_you_mean(name, known, n=3, cutoff=0.4)}")


def register_task(task: Task) -> Task:
    if task.name in _TASKS:
        raise TaskError(f"task '{task.name}' is already registered ({origin_of(_TASKS[task.name])}; "
                        f"this one: {origin_of(task)})")
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
        from flanforge.mixtures import builtin  # on first lookup: its family modules are large

        for mixture in builtin.mixtures():
            register_mixture(mixture.name, mixture)
            for task in mixture.tasks():
                if _TASKS.get(task.name) is not task:
                    register_task(task)


def get_task(name: str) -> Task:
    _ensure_builtins()
    if name not in _TASKS:
        raise _unknown("task", name, list(_TASKS))
    return _TASKS[name]


def get_mixture(name: str) -> Mixture:
    _ensure_builtins()
    if name == FLAN2022:
        raise TaskError("mixture 'flan2022' reads a Flan collection directory: set mixture.data_dir=DIR "
                        "(inspect and prepare: --data-dir DIR)")
    if name not in _MIXTURES:
        raise _unknown("mixture", name, list(_MIXTURES))
    entry = _MIXTURES[name]
    if not isinstance(entry, Mixture):
        entry = _MIXTURES[name] = entry()
    return entry


def task_names() -> list[str]:
    _ensure_builtins()
    return sorted(_TASKS)


def mixture_names() -> list[str]:
    _ensure_builtins()
    return sorted(_MIXTURES)


def check_data_dir(name: str, data_dir: str | Path | None) -> None:
    """``--data-dir`` is a directory, and only given for the mixture that reads it (``flan2022``)."""
    if data_dir is None:
        return
    if name != FLAN2022:
        raise TaskError(f"--data-dir is the Flan collection directory of '{FLAN2022}'; mixture '{name}' does not "
                        "read it (a YAML mixture names its own: flan_collection: DIR)")
    if not is_remote(data_dir) and not Path(data_dir).is_dir():
        raise TaskError(f"--data-dir {data_dir}: no such directory")


def load_mixture(name_or_path: str | Path, on_bad_record: str = "error", data_dir: str | Path | None = None) -> Mixture:
    """A registered mixture, the mixture a YAML file defines (a task file gives a one-task mixture),
    or ``flan2022`` over the Flan collection in ``data_dir``.

    ``on_bad_record`` (``error`` or ``skip``) is the bad-record policy of every
    file source of the mixture that does not set its own.
    """
    policy = checked_policy(on_bad_record)
    ref = str(name_or_path)
    if ref == FLAN2022 and data_dir is not None:
        key = staged(str(data_dir)) if is_remote(data_dir) else Path(data_dir).resolve()
        if key not in _COLLECTIONS:
            collection = FlanCollection(key)
            collection.use_default_policy(policy)  # the run's policy before the first bad row is judged
            _COLLECTIONS[key] = collection.mixture(FLAN2022)
        mixture = _COLLECTIONS[key]
    elif task_yaml.is_yaml_path(ref):
        loaded = _load_file(Path(ref))
        mixture = loaded if isinstance(loaded, Mixture) else get_mixture(loaded.name)
    else:
        mixture = get_mixture(ref)
    for task in mixture.tasks():
        if isinstance(task.source, (FileSource, CollectionSource)):
            task.source.use_default_policy(policy)
    return mixture


def _load_file(path: Path) -> Task | Mixture:
    path = path.resolve()
    if path in _LOADING:
        cycle = " -> ".join(str(p) for p in _LOADING[_LOADING.index(path):] + [path])
        raise TaskError(f"{path}: the mixture includes itself ({cycle})")
    if len(_LOADING) >= MAX_DEPTH:  # checked before Mixture could: each level costs Python frames
        raise TaskError(f"{path}: mixture files nested more than {MAX_DEPTH} deep (the limit), from {_LOADING[0]}")
    if path not in _FILES:
        _ensure_builtins()
        _LOADING.append(path)
        try:
            loaded = task_yaml.load(path, _resolve)
        finally:
            _LOADING.pop()
        members = loaded.tasks() if isinstance(loaded, Mixture) else [loaded]
        for task in members:
            if _TASKS.get(task.name, task) is not task:
                raise TaskError(f"{path}: task '{task.name}' is already registered ({origin_of(_TASKS[task.name])})")
        for task in members:
            _TASKS[task.name] = task
        single = Mixture(loaded.name, [(loaded, Rate.examples())]) if isinstance(loaded, Task) else loaded
        if _MIXTURES.get(single.name, single) is not single:
            raise TaskError(f"{path}: mixture '{single.name}' is already registered")
        _MIXTURES[single.name] = single
        _FILES[path] = loaded
    return _FILES[path]


def _resolve(kind: str, ref: str, base: Path) -> Task | Mixture:
    """A mixture member named in a YAML file: a YAML path (relative to the file) or a registered name."""
    if task_yaml.is_yaml_path(ref):
        member = _load_file(base / ref)
        if (kind == "task") != isinstance(member, Task):
            raise TaskError(f"{base / ref}: defines a {'task' if isinstance(member, Task) else 'mixture'}, not a {kind}")
        return member
    return get_task(ref) if kind == "task" else get_mixture(ref)


def reset(with_builtins: bool = True) -> None:
    """Empty the registries (tests). The built-in suite comes back on the next lookup unless ``with_builtins`` is False."""
    global _BUILTINS_LOADED
    _TASKS.clear()
    _MIXTURES.clear()
    _FILES.clear()
    _COLLECTIONS.clear()
    _BUILTINS_LOADED = not with_builtins
