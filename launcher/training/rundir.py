"""The run directory: one owner of every path in it, and what a restarted run may change.

Layout of ``<output_dir>`` (:class:`RunDir` is the only code that spells these
names; ``slurm/common.sh`` repeats the few it checks, and
``tests/launcher/training/test_rundir.py`` keeps the two equal)::

    config.yaml                 the resolved config of the run
    tokenizer/                  the SentencePiece model trained on first use
    tensorboard/                event files (rank 0)
    shards/                     the mixture's webdataset shards (unless mixture.shards_dir)
    checkpoints/<tag>/          DeepSpeed's per-rank shards, rng_rank<r>.pt, trainer.json,
                                config.yaml, universal/ (made when resuming on another world size)
    checkpoints/latest          the newest *complete* tag (its trainer.json written)
    PREEMPTED                   the step a stop signal ended the run at (removed when it finishes)
    .lock                       the run's lock, naming its holder (``launcher/training/runlock.py``)
    .errors/<launch id>         the first error of a launch, seen by every node (``launcher/ranks/report.py``)
    eval/history.jsonl          periodic evaluation results (launcher/evaluation/periodic.py)

A run started again on the same directory resumes it: keys that shape the
model, the tokenizer or the data stream must be equal; keys marked
``may_change`` on their config field (learning rate, mixture weights, step
budget, world size, ...) may change, and are reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import yaml

from flanforge.config_fields import key_may_change
from flanforge.errors import UserError
from flanforge.launcher.config import Config, dump_config, to_dict
from flanforge.mixtures.storage import is_remote


class RunDir:
    """Every path of one run directory."""

    CONFIG = "config.yaml"
    TOKENIZER = "tokenizer"
    TENSORBOARD = "tensorboard"
    SHARDS = "shards"
    CHECKPOINTS = "checkpoints"
    LATEST = "latest"
    TRAINER_STATE = "trainer.json"
    UNIVERSAL = "universal"
    PREEMPTED = "PREEMPTED"
    LOCK = ".lock"
    ERRORS = ".errors"
    EVAL_HISTORY = "eval/history.jsonl"
    TAG_PREFIX = "step_"

    def __init__(self, root: str | Path, shards_dir: str | Path | None = None):
        self.root = Path(root)
        self.shards: Path | str = self.root / self.SHARDS  # or a URL (mixtures/storage/)
        if shards_dir:
            self.shards = str(shards_dir) if is_remote(shards_dir) else Path(shards_dir)
        self.config = self.root / self.CONFIG
        self.tokenizer = self.root / self.TOKENIZER
        self.tensorboard = self.root / self.TENSORBOARD
        self.checkpoints = self.root / self.CHECKPOINTS
        self.latest = self.checkpoints / self.LATEST
        self.preempted = self.root / self.PREEMPTED
        self.lock = self.root / self.LOCK
        self.errors = self.root / self.ERRORS
        self.eval_history = self.root / self.EVAL_HISTORY

    @classmethod
    def of(cls, cfg: Config) -> "RunDir":
        return cls(cfg.output_dir, cfg.mixture.shards_dir)

    # -- checkpoints

    @classmethod
    def tag_for(cls, step: int) -> str:
        return f"{cls.TAG_PREFIX}{step:08d}"

    def checkpoint(self, tag: str) -> Path:
        return self.checkpoints / tag

    def trainer_state(self, tag: str) -> Path:
        """Written last by a save: its presence marks the tag complete."""
        return self.checkpoint(tag) / self.TRAINER_STATE

    def rank_state(self, tag: str, name: str, rank: int) -> Path:
        """A per-rank checkpoint component's file, e.g. ``rng_rank0.pt``."""
        return self.checkpoint(tag) / f"{name}_rank{rank}.pt"

    def universal(self, tag: str) -> Path:
        return self.checkpoint(tag) / self.UNIVERSAL

    def tags(self) -> list[str]:
        """Every checkpoint tag directory, complete or not, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p.name for p in self.checkpoints.iterdir() if p.is_dir() and p.name.startswith(self.TAG_PREFIX))

    def complete_tags(self) -> list[str]:
        """Tags whose save finished (``trainer.json`` written), oldest first."""
        return [tag for tag in self.tags() if self.trainer_state(tag).is_file()]

    def latest_tag(self) -> Optional[str]:
        """The tag ``latest`` names, checked to be complete; None for a fresh run."""
        if not self.latest.is_file():
            return None
        tag = self.latest.read_text(errors="replace").strip()
        if not re.fullmatch(rf"{self.TAG_PREFIX}\d{{8}}", tag):
            # Only a tag this module writes: a path in `latest` must never lead outside the run.
            raise UserError(f"{self.latest} holds {tag[:80]!r}, not a checkpoint tag like '{self.tag_for(0)}'; "
                            f"write an existing tag into it (ls {self.checkpoints}) or start a new output_dir")
        if not self.trainer_state(tag).is_file():
            raise UserError(
                f"{self.latest} names checkpoint '{tag}', but {self.checkpoint(tag)} is missing or incomplete; "
                f"point {self.latest} at an older complete tag or start a new output_dir"
            )
        return tag

    # -- the config of the run

    def check_is_run(self) -> None:
        """A UserError unless this is a flanforge run directory (for commands that read one)."""
        if not self.root.is_dir():
            raise UserError(f"run directory {self.root} does not exist")
        if not self.config.is_file():
            raise UserError(f"{self.root} is not a flanforge run directory: no {self.CONFIG}")

    def write_config(self, cfg: Config) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.config)


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


def check_run_dir(cfg: Config, run_dir: RunDir) -> dict[str, tuple[Any, Any]]:
    """Validate the run directory (``output_dir``) for this config; returns the allowed changes of a resumed run.

    Raises :class:`UserError` when the directory holds a run whose config differs
    in a key that cannot change.
    """
    if not run_dir.config.is_file():
        if run_dir.checkpoints.is_dir() and any(run_dir.checkpoints.iterdir()):
            raise UserError(f"{cfg.output_dir} holds checkpoints but no {RunDir.CONFIG}; choose another output_dir")
        return {}
    old = yaml.safe_load(run_dir.config.read_text()) or {}
    changes = config_changes(old, to_dict(cfg))
    fixed = {k: v for k, v in changes.items() if not key_may_change(Config, k)}
    if fixed:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(fixed.items())[:5])
        raise UserError(
            f"{cfg.output_dir} holds a run with a different config ({shown}); to resume it, "
            f"use the same values for these keys; to start afresh, choose another output_dir"
        )
    return changes
