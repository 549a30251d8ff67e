"""The ``mixture:`` section of a run config, and the stream's config built from it.

:class:`MixtureConfig` is what a user writes under ``mixture:``;
:class:`StreamConfig` is that section plus what the stream needs from the rest
of the run (seed, rows per micro-batch, architecture), made with
:meth:`StreamConfig.from_section`. Both check their values with the same
:func:`_check_stream_values`. Which keys may change on resume is marked on the
fields (:func:`flanforge.config_fields.may_change`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional

from flanforge.config_fields import changes_allowed, may_change
from flanforge.errors import ConfigError


def _check_stream_values(where: str, seq_len: int, block_size: Optional[int], num_workers: int) -> None:
    if seq_len < 8:
        raise ConfigError(f"{where}.seq_len={seq_len} is too small (at least 8)")
    if block_size is not None and block_size < 1:
        raise ConfigError(f"{where}.block_size must be at least 1, got {block_size}")
    if num_workers < 0:
        raise ConfigError(f"{where}.num_workers must be >= 0, got {num_workers}")


@dataclass
class MixtureConfig:
    """What the sampler streams and how rows are packed."""

    name: str = "demo"
    """A registered mixture name, or a path to a task/mixture YAML file."""
    seq_len: int = 128
    """Length of a packed training row, in tokens."""
    include_inputs_in_loss: bool = False
    """Also train on input tokens (FLAN and the SDE study train on targets only)."""
    overlong: Literal["truncate", "drop"] = "truncate"
    """What to do with an example longer than ``seq_len``: cut its input from the left, or drop it."""
    on_bad_record: Literal["error", "skip"] = may_change("error")
    """Malformed source records, and prepared shard members whose bytes do not match their checksum: stop
    with an error naming file:line (shard and member), or skip and count them."""
    weights: dict[str, float] = may_change(default_factory=dict)
    """Override sub-mixture weights by name (allowed to change on resume)."""
    num_workers: int = may_change(0)
    """DataLoader worker processes per rank."""
    block_size: Optional[int] = None
    """Examples per block, the unit of sampling, packing and work split (``None``: ``max(1024, 4 * seq_len)``)."""
    shards_dir: Optional[str] = may_change(None)
    """Where ``flanforge prepare`` shards live; ``None``: ``<output_dir>/shards``, prepared on first use."""
    data_dir: Optional[str] = None
    """The Flan collection directory ``name: flan2022`` reads (parquet ``<submix>_<variant>_data/``
    directories and/or JSON Lines exports ``*.jsonl``/``*.json``, gzipped or not); other mixtures ignore it."""

    def __post_init__(self) -> None:
        _check_stream_values("mixture", self.seq_len, self.block_size, self.num_workers)
        for name, weight in self.weights.items():
            if weight < 0:
                raise ConfigError(f"mixture.weights.{name} must be >= 0, got {weight!r}")


@dataclass(frozen=True)
class StreamConfig:
    """How the stream samples, packs and splits. Fields marked :func:`may_change` may change on
    resume; the others fix the global stream's rows (:meth:`layout`)."""

    seed: int
    seq_len: int
    """Packed row length (decoder), or encoder row length (T5)."""
    micro_batch_size: int = may_change()
    """Rows per batch a consumer yields."""
    block_size: Optional[int] = None
    """Examples per block: the unit of sampling, packing and work split; never depends on world size.
    ``None``: ``max(1024, 4 * seq_len)``. Packing wastes about half a row per block, so its efficiency
    is about ``1 - 0.5 / rows per block``; with 4 * seq_len examples a block fills about
    4 x (mean example tokens) rows, whatever the row length."""
    arch: Literal["decoder", "t5"] = "decoder"
    target_len: Optional[int] = None
    """T5 decoder row length; ``None``: ``seq_len``."""
    include_inputs_in_loss: bool = False
    overlong: Literal["truncate", "drop"] = "truncate"
    num_workers: int = may_change(0)
    """DataLoader workers per rank; 0 counts as one consumer (the main process)."""
    on_bad_record: Literal["error", "skip"] = may_change("error")
    """A shard member whose bytes do not match its checksum: an error, or its records skipped and counted."""

    def __post_init__(self) -> None:
        if self.block_size is None:
            object.__setattr__(self, "block_size", max(1024, 4 * self.seq_len))
        if self.target_len is None:
            object.__setattr__(self, "target_len", self.seq_len)
        _check_stream_values("StreamConfig", self.seq_len, self.block_size, self.num_workers)
        if self.micro_batch_size < 1:
            raise ConfigError(f"StreamConfig.micro_batch_size must be at least 1, got {self.micro_batch_size}")
        if self.seed < 0:
            raise ConfigError(f"StreamConfig.seed must be >= 0, got {self.seed}")

    @classmethod
    def from_section(cls, section: MixtureConfig, *, seed: int, micro_batch_size: int, arch: str) -> "StreamConfig":
        """The stream's config from the run's ``mixture:`` section (every field the two share) and the rest."""
        shared = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(section)}
        return cls(seed=seed, micro_batch_size=micro_batch_size, arch=arch,
                   **{name: getattr(section, name) for name in shared})

    def layout(self) -> dict[str, Any]:
        """What fixes the global stream's rows (the fields not marked ``may_change``, but the seed,
        which the state keeps apart): must not change on resume."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not changes_allowed(f) and f.name != "seed"}
