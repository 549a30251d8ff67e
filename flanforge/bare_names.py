"""The repository's top-level folders are ``flanforge.*`` packages, never bare ones (a leaf module).

``launcher/``, ``mixtures/``, ``model/`` and ``kernels/`` sit at the repository root, and
Python puts the current directory first on ``sys.path`` for ``python -m ...`` and
``python -c``; from the root, ``import kernels`` would find our ``kernels/`` folder
before the PyPI package ``kernels`` that transformers imports (and die inside
transformers with ``cannot import name ... from 'kernels'``). So each folder's
``__init__`` starts with::

    if "." not in __name__:  # imported under its bare name: not ours to answer
        from flanforge.bare_names import hand_over
        hand_over(__name__, __file__)

:func:`hand_over` puts the installed package of that name in the folder's place
(``sys.modules`` is read again once a module's code has run), or fails as a missing
module does. Whatever the working directory, ``sys.path`` or launcher, a bare name
never runs our code. ``PYTHONSAFEPATH=1`` in ranks and scripts is only a second guard.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path


def _finds_ours(entry: str, name: str, ours: Path) -> bool:
    """Whether ``sys.path`` entry ``entry`` ("" is the working directory) leads to our folder ``ours``."""
    try:
        return (Path(entry or ".") / name).resolve() == ours
    except (OSError, RuntimeError):  # an unreadable or looping entry leads nowhere
        return False


def installed_spec(name: str, init_file: str) -> importlib.machinery.ModuleSpec | None:
    """The spec Python would find for bare ``name`` if our folder (holding ``init_file``) were not on the path."""
    ours = Path(init_file).resolve().parent
    path = [entry for entry in sys.path if not _finds_ours(entry, name, ours)]
    for finder in sys.meta_path:
        if finder is importlib.machinery.PathFinder:
            spec = finder.find_spec(name, path)
        elif hasattr(finder, "find_spec"):
            spec = finder.find_spec(name, None)
        else:
            continue
        if spec is not None and not _same_file(spec.origin, init_file):
            return spec
    return None


def _same_file(origin: str | None, init_file: str) -> bool:
    return origin is not None and Path(origin).resolve() == Path(init_file).resolve()


def hand_over(name: str, init_file: str) -> None:
    """Replace the half-imported bare module ``name`` (our folder) by the installed package of that name."""
    spec = installed_spec(name, init_file)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(
            f"No module named {name!r}: the repository's {name}/ folder is the package flanforge.{name} "
            f"and answers to that name only", name=name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
