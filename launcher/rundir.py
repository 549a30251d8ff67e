"""The run directory contract and what a restarted run may change.

``<output_dir>/config.yaml`` is the resolved config of the run. A run started
again on the same directory resumes it: keys that shape the model, the
tokenizer or the data stream must be equal, keys such as the learning rate,
mixture weights, step budget or world size may change (and are reported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flanforge.config_fields import key_may_change
from flanforge.launcher.config import Config, dump_config, to_dict
from flanforge.errors import UserError

CONFIG_FILE = "config.yaml"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "weights":  # weights: one value, listed whole
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old, new) for every leaf that differs."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_run_dir(cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Validate ``output_dir`` for this config; returns the allowed changes of a resumed run.

    Raises :class:`UserError` when the directory holds a run whose config differs
    in a key that cannot change.
    """
    path = Path(cfg.output_dir) / CONFIG_FILE
    if not path.is_file():
        if Path(cfg.output_dir).is_dir() and any(Path(cfg.output_dir).glob("checkpoints/*")):
            raise UserError(f"{cfg.output_dir} holds checkpoints but no {CONFIG_FILE}; choose another output_dir")
        return {}
    old = yaml.safe_load(path.read_text()) or {}
    changes = config_changes(old, to_dict(cfg))
    fixed = {k: v for k, v in changes.items() if not key_may_change(Config, k)}
    if fixed:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(fixed.items())[:5])
        raise UserError(
            f"{cfg.output_dir} holds a run with a different config ({shown}); to resume it, "
            f"use the same values for these keys; to start afresh, choose another output_dir"
        )
    return changes


def write_config(cfg: Config) -> None:
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    dump_config(cfg, Path(cfg.output_dir) / CONFIG_FILE)
