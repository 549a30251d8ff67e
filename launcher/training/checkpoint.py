"""Sharded checkpoints, published atomically, of every component registered with the checkpointer.

Each component that carries resume state registers once (:meth:`Checkpointer.register`), with
how it is kept; save and load then go over the registrations, in their order, symmetrically:

==========  ===================================================================================
``files``   saves itself into the tag's directory: the DeepSpeed engine (:class:`EngineFiles`:
            its per-rank shards of model, optimizer and LR schedule; a universal checkpoint
            when the world size changed)
``rank``    one state per rank, ``<name>_rank<r>.pt`` (:class:`RngStates`: Python, NumPy, torch
            and CUDA generators); restored only on the same world size
``run``     one JSON state for the run in ``trainer.json`` (the trainer's step and counters, the
            data stream, the periodic evaluation); ``state_dict()`` may be collective, rank 0 writes
==========  ===================================================================================

Paths (:class:`~flanforge.launcher.training.rundir.RunDir`)::

    checkpoints/<tag>/             DeepSpeed's per-rank shards (model + optimizer states)
    checkpoints/<tag>/rng_rank<r>.pt
    checkpoints/<tag>/trainer.json {"step", "world_size", <name>: <state_dict> ...} (rank 0)
    checkpoints/<tag>/config.yaml  the resolved config of the run that wrote it
    checkpoints/latest             the newest *complete* tag

Every rank writes its part, then all ranks meet at a barrier, and only then
does rank 0 replace ``latest`` (:func:`~flanforge.files.atomic_write`). A
crash or SIGKILL during a save therefore leaves ``latest`` naming the
previous, complete checkpoint. Older tags beyond ``keep_last`` are deleted
after the new ``latest`` is published.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from flanforge.errors import UserError
from flanforge.files import atomic_write, reporting_full_disk
from flanforge.launcher.config import Config, dump_config
from flanforge.launcher.ranks.layout import RankLayout
from flanforge.launcher.training import faults
from flanforge.launcher.training.rundir import RunDir


class Stateful(Protocol):
    """A component that carries resume state (torchtitan's ``Stateful``)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RngStates:
    """This rank's random generators (a ``rank`` component)."""

    def state_dict(self) -> dict[str, Any]:
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])


class EngineFiles:
    """The DeepSpeed engine (a ``files`` component): its own sharded save and load."""

    def __init__(self, engine):
        self.engine = engine

    def save(self, run_dir: RunDir, tag: str, step: int) -> None:
        self.engine.save_checkpoint(str(run_dir.checkpoints), tag=tag, client_state={"step": step}, save_latest=False)

    def load(self, run_dir: RunDir, tag: str, universal: bool) -> None:
        if universal:
            load_path, _ = self.engine.load_checkpoint(str(run_dir.checkpoint(tag)), tag=RunDir.UNIVERSAL)
        else:
            load_path, _ = self.engine.load_checkpoint(str(run_dir.checkpoints), tag=tag)
        if load_path is None:
            raise UserError(f"DeepSpeed could not load checkpoint {run_dir.checkpoint(tag)}")


SCOPES = ("files", "rank", "run")


def prune(run_dir: RunDir, keep: int, current: str) -> None:
    """Delete complete tags older than the ``keep`` newest up to ``current``, and any tag newer than it."""
    tags = run_dir.tags()
    done = [t for t in tags if t <= current]
    for tag in done[:-keep]:
        shutil.rmtree(run_dir.checkpoint(tag), ignore_errors=True)
    # Tags newer than `latest` are leftovers of a save that was killed mid-write.
    for tag in tags:
        if tag > current:
            shutil.rmtree(run_dir.checkpoint(tag), ignore_errors=True)


class Checkpointer:
    """Saves and restores the components registered with it, for one rank. Collective."""

    def __init__(self, run_dir: RunDir, layout: RankLayout, keep_last: int):
        self.run_dir, self.keep_last = run_dir, keep_last
        self.rank, self.world_size, self.is_main = layout.rank, layout.world_size, layout.is_main
        self.components: dict[str, tuple[str, Any]] = {}  # name -> (scope, component), in registration order
        self.universal = False

    def register(self, name: str, component: Any, scope: str = "run") -> None:
        """Keep ``component`` in every checkpoint as ``scope`` says (see the module doc); once per name."""
        if scope not in SCOPES:
            raise ValueError(f"checkpoint component '{name}': scope must be one of {SCOPES}, got {scope!r}")
        if name in self.components or name in ("step", "world_size"):
            raise ValueError(f"checkpoint component '{name}' is already registered")
        self.components[name] = (scope, component)

    def save(self, step: int, cfg: Config) -> str:
        """Write a checkpoint on every rank and publish it; returns its tag."""
        tag = self.run_dir.tag_for(step)
        saved: dict[str, Any] = {"step": step, "world_size": self.world_size}
        # A full disk or a file-size limit is one line naming the tag (also when torch.save's writer reports
        # it as a RuntimeError); the tag stays incomplete, `latest` names the previous one, the next save
        # prunes it.
        with reporting_full_disk(self.run_dir.checkpoint(tag)):
            for name, (scope, component) in self.components.items():
                if scope == "files":
                    component.save(self.run_dir, tag, step)
                elif scope == "rank":
                    torch.save(component.state_dict(), self.run_dir.rank_state(tag, name, self.rank))
                else:
                    saved[name] = component.state_dict()  # may be collective: every rank computes it
            faults.kill_in_save(step)
            if self.is_main:
                dump_config(cfg, self.run_dir.checkpoint(tag) / RunDir.CONFIG)
                # trainer.json marks the tag complete: written last, before the barrier.
                atomic_write(self.run_dir.trainer_state(tag), json.dumps(saved))
        dist.barrier()
        if self.is_main:
            atomic_write(self.run_dir.latest, tag)
            prune(self.run_dir, keep=self.keep_last, current=tag)
        dist.barrier()
        return tag

    def needs_universal(self, tag: str | None) -> bool:
        """True when checkpoint ``tag`` (the resume point) was written by another world size; then make
        its universal form.

        Rank 0 converts the checkpoint with DeepSpeed's ``ds_to_universal`` (into a
        temp folder, renamed when complete); the engine must then be built with
        ``checkpoint.load_universal`` (see :func:`flanforge.launcher.training.engine.deepspeed_config`).
        """
        if tag is None:
            return False
        saved = trainer_state(self.run_dir, tag)["world_size"]
        self.universal = saved != self.world_size
        if self.universal and self.is_main and not self.run_dir.universal(tag).is_dir():
            print(f"[flanforge] checkpoint {tag} was written by {saved} ranks, resuming on {self.world_size}: "
                  f"converting it to DeepSpeed's universal format", flush=True)
            _to_universal(self.run_dir, tag)
        dist.barrier()
        return self.universal

    def load(self, tag: str | None) -> bool:
        """Restore every registered component from checkpoint ``tag``; False for a fresh run (None).
        Call :meth:`needs_universal` first (the engine depends on it). A component the checkpoint has
        no state for (it was written before the component was registered) keeps its fresh state."""
        if tag is None:
            return False
        saved = _upgrade(trainer_state(self.run_dir, tag))
        for name, (scope, component) in self.components.items():
            try:
                if scope == "files":
                    component.load(self.run_dir, tag, self.universal)
                elif scope == "rank" and not self.universal:  # per-rank states need the same ranks
                    component.load_state_dict(torch.load(self.run_dir.rank_state(tag, name, self.rank),
                                                         weights_only=False))
            except UserError:
                raise
            except UNREADABLE as err:
                raise unreadable(self.run_dir, tag, err) from None
            if scope == "run" and name in saved:
                component.load_state_dict(saved[name])
        return True


UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, ValueError, AssertionError)
"""What torch.load and DeepSpeed raise on a truncated or overwritten checkpoint file."""


def unreadable(run_dir: RunDir, tag: str, err: BaseException) -> UserError:
    """A checkpoint file that cannot be read (truncated, overwritten): one line naming it."""
    what = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return UserError(f"{run_dir.checkpoint(tag)}: checkpoint cannot be read ({type(err).__name__}: {what}); it is "
                     f"truncated or damaged: point {run_dir.latest} at an older complete tag or start a new output_dir")


def trainer_state(run_dir: RunDir, tag: str) -> dict[str, Any]:
    """A checkpoint's ``trainer.json``, checked to be a JSON object with its step and world size."""
    path = run_dir.trainer_state(tag)
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise unreadable(run_dir, tag, err) from None
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("world_size"), int)):
        raise unreadable(run_dir, tag, ValueError(f"{path} lacks an integer 'step' and 'world_size'"))
    return state


def _upgrade(saved: dict[str, Any]) -> dict[str, Any]:
    """trainer.json as written before the trainer's state was a registered component."""
    saved.setdefault("trainer", {"step": saved["step"], "counters": saved.get("counters", {})})
    return saved


def _to_universal(run_dir: RunDir, tag: str) -> None:
    universal = run_dir.universal(tag)
    tmp = universal.with_name(universal.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(run_dir.checkpoint(tag)),
           "--output_folder", str(tmp), "--num_extract_workers", "1", "--num_merge_workers", "1",
           "--inject_missing_state"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"converting {run_dir.checkpoint(tag)} to a universal checkpoint failed: {proc.stderr.strip()[-500:]}")
    os.replace(tmp, universal)
