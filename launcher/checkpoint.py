"""Sharded checkpoints, published atomically.

Layout under ``<output_dir>/checkpoints/``::

    <tag>/                 DeepSpeed's per-rank shards (model + optimizer states)
    <tag>/rng_rank<r>.pt   every rank's RNG states
    <tag>/trainer.json     step, data-stream state, counters (rank 0)
    <tag>/config.yaml      the resolved config of the run that wrote it
    <tag>/universal/       DeepSpeed's universal checkpoint, made when resuming on another world size
    latest                 the newest *complete* tag

Every rank writes its part, then all ranks meet at a barrier, and only then
does rank 0 replace ``latest`` (write a temp file, fsync, rename). A crash or
SIGKILL during a save therefore leaves ``latest`` naming the previous,
complete checkpoint. Older tags beyond ``keep_last`` are deleted after the
new ``latest`` is published.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from flanforge.launcher.config import Config, dump_config
from flanforge.errors import UserError
from flanforge.files import atomic_write

LATEST = "latest"
TAG_PREFIX = "step_"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def latest_tag(output_dir: str | Path) -> Optional[str]:
    """The tag ``latest`` names, checked to be a complete checkpoint; None for a fresh run."""
    root = checkpoint_root(output_dir)
    path = root / LATEST
    if not path.is_file():
        return None
    tag = path.read_text(errors="replace").strip()
    if not re.fullmatch(rf"{TAG_PREFIX}\d{{8}}", tag):
        # Only a tag this module writes: a path in `latest` must never lead outside the run.
        raise UserError(f"{path} holds {tag[:80]!r}, not a checkpoint tag like '{tag_for(0)}'; "
                        f"write an existing tag into it (ls {root}) or start a new output_dir")
    if not (root / tag / "trainer.json").is_file():
        raise UserError(
            f"{path} names checkpoint '{tag}', but {root / tag} is missing or incomplete; "
            f"point {path} at an older complete tag or start a new output_dir"
        )
    return tag


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine, cfg: Config, step: int, trainer_state: dict[str, Any], rank: int) -> str:
    """Write a checkpoint on every rank and publish it; returns its tag."""
    root = checkpoint_root(cfg.output_dir)
    tag = tag_for(step)
    engine.save_checkpoint(str(root), tag=tag, client_state={"step": step}, save_latest=False)
    torch.save(_rng_state(), root / tag / f"rng_rank{rank}.pt")
    if os.environ.get("FLANFORGE_KILL_IN_SAVE") == str(step):  # fault injection for tests
        os.kill(os.getpid(), signal.SIGKILL)
    if rank == 0:
        dump_config(cfg, root / tag / "config.yaml")
        # trainer.json marks the tag complete: written last, before the barrier.
        state = {"step": step, "world_size": dist.get_world_size(), **trainer_state}
        atomic_write(root / tag / "trainer.json", json.dumps(state))
    dist.barrier()
    if rank == 0:
        atomic_write(root / LATEST, tag)
        _prune(root, keep=cfg.checkpoint.keep_last, current=tag)
    dist.barrier()
    return tag


def _prune(root: Path, keep: int, current: str) -> None:
    tags = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(TAG_PREFIX))
    done = [t for t in tags if t <= current]
    for tag in done[:-keep]:
        shutil.rmtree(root / tag, ignore_errors=True)
    # Tags newer than `latest` are leftovers of a save that was killed mid-write.
    for tag in tags:
        if tag > current:
            shutil.rmtree(root / tag, ignore_errors=True)


UNIVERSAL = "universal"


def needs_universal(output_dir: str | Path, world_size: int, rank: int) -> bool:
    """True when ``latest`` was written by another world size; then make its universal form.

    Rank 0 converts the checkpoint with DeepSpeed's ``ds_to_universal`` (into a
    temp folder, renamed when complete); the engine must then be built with
    ``checkpoint.load_universal`` (see :func:`flanforge.launcher.engine.deepspeed_config`).
    Collective: every rank must call it.
    """
    tag = latest_tag(output_dir)
    if tag is None:
        return False
    tag_dir = checkpoint_root(output_dir) / tag
    saved = trainer_state(tag_dir)["world_size"]
    if saved == world_size:
        return False
    if rank == 0 and not (tag_dir / UNIVERSAL).is_dir():
        print(f"[flanforge] checkpoint {tag} was written by {saved} ranks, resuming on {world_size}: "
              f"converting it to DeepSpeed's universal format", flush=True)
        tmp = tag_dir / (UNIVERSAL + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(tag_dir),
               "--output_folder", str(tmp), "--num_extract_workers", "1", "--num_merge_workers", "1",
               "--inject_missing_state"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"converting {tag_dir} to a universal checkpoint failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, tag_dir / UNIVERSAL)
    dist.barrier()
    return True


def load(engine, output_dir: str | Path, rank: int, universal: bool = False) -> Optional[dict[str, Any]]:
    """Restore engine, optimizer, scheduler and RNG from ``latest``; returns trainer.json or None."""
    tag = latest_tag(output_dir)
    if tag is None:
        return None
    root = checkpoint_root(output_dir)
    state = trainer_state(root / tag)
    try:
        if universal:
            load_path, _ = engine.load_checkpoint(str(root / tag), tag=UNIVERSAL)
        else:
            load_path, _ = engine.load_checkpoint(str(root), tag=tag)
        if not universal:  # RNG streams are per rank: they only carry over to the same world size
            _set_rng_state(torch.load(root / tag / f"rng_rank{rank}.pt", weights_only=False))
    except UNREADABLE as err:
        raise unreadable(root / tag, err) from None
    if load_path is None:
        raise UserError(f"DeepSpeed could not load checkpoint {root / tag}")
    return state


UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, ValueError, AssertionError)
"""What torch.load and DeepSpeed raise on a truncated or overwritten checkpoint file."""


def unreadable(tag_dir: Path, err: BaseException) -> UserError:
    """A checkpoint file that cannot be read (truncated, overwritten): one line naming it."""
    what = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return UserError(f"{tag_dir}: checkpoint cannot be read ({type(err).__name__}: {what}); it is truncated or "
                     f"damaged: point {tag_dir.parent / LATEST} at an older complete tag or start a new output_dir")


def trainer_state(tag_dir: Path) -> dict[str, Any]:
    """A checkpoint's ``trainer.json``, checked to be a JSON object with its step and world size."""
    path = tag_dir / "trainer.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise unreadable(tag_dir, err) from None
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("world_size"), int)):
        raise unreadable(tag_dir, ValueError(f"{path} lacks an integer 'step' and 'world_size'"))
    return state
