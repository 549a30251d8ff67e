"""Field helpers shared by every typed config section (a leaf module: imports nothing of the project).

Whether a key may change when a run resumes is marked once, on its field:
``lr: float = may_change(1e-3)``. A section field marked so (``checkpoint``,
``launch``) lets every key under it change. The run directory check
(``launcher/training/rundir.py``) and the stream's saved-state check
(``mixtures/config.py: StreamConfig.layout``) both read these marks.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

_MAY_CHANGE = "may_change_on_resume"


def may_change(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value may differ when a run resumes (learning rate, step budget, ...)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_MAY_CHANGE: True})


def changes_allowed(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(_MAY_CHANGE, False))


def key_may_change(cls: type, key: str) -> bool:
    """True when dotted ``key`` (e.g. ``train.lr``, ``model.hf_config.hidden_size``) of config tree
    ``cls`` may change on resume: its field, or a section above it, is marked :func:`may_change`."""
    for part in key.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return False
        if changes_allowed(fields[part]):
            return True
        tp = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(tp):
            return False  # a leaf, or a key inside a free mapping such as model.hf_config
        cls = tp
    return False
