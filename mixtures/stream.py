"""The mixture stream: a world-size-independent global example stream, packed, split, resumable.

The global stream
    Example ``g`` belongs to block ``b = g // block_size``. The tasks of a
    block's examples are drawn by inverse-CDF sampling from a numpy Generator
    seeded with ``(seed, b)`` under the rates in force for that block, so a
    block's picks cost O(block_size) and never depend on other blocks.
    The ``k``-th pick of task ``t`` (over the whole stream) reads position
    ``k % n_t`` of epoch ``k // n_t`` of ``t``'s record order. An epoch's order
    is a seeded shuffle of ``(seed, t, epoch)``: the shard order is shuffled,
    then the records within each shard ("shuffled within a buffer": the buffer
    is one shard). Every epoch of a task visits each record exactly once.
    Each example is rendered with ``random.Random("seed/task/record/epoch")``,
    so template and format are a function of those four, tokenised, and the
    whole block is packed into rows (first-fit decreasing); rows never mix
    blocks, so a block's rows are a deterministic function of the block.

Consumers
    A consumer is a (rank, DataLoader worker) pair; there are
    ``C = world_size * max(num_workers, 1)``. Consumer ``c`` packs the blocks
    ``b ≡ c (mod C)`` in increasing order and yields their rows, in order, in
    micro-batches of ``micro_batch_size`` rows (a micro-batch may span two of
    its blocks). A task's cursor at block ``b`` is its cursor at a known block
    plus the pick counts of the blocks in between (cheap: no rendering).

State and resume
    Every batch carries, per row, ``block``, ``row`` and ``block_rows``. A
    :class:`ConsumptionTracker` on each rank records what the trainer consumed
    (not what workers prefetched); at a checkpoint the ranks' small summaries
    are gathered and merged into a :class:`StreamState`: the frontier ``F``
    (first block not fully consumed), every task's cursor at ``F``, the rows
    consumed of the blocks in ``[F, G)`` (``G`` = one past the highest block
    touched), the rates in force for blocks ``< G`` and the seed. Its size does
    not grow with the steps run and nothing in it depends on ranks or workers.
    A resumed stream starts each consumer at its first block ``>= F``,
    skipping complete blocks and consumed rows: the same world size and
    workers reproduce the uninterrupted batches exactly; another consumer count
    still consumes every row of the global stream exactly once. New mixture
    rates apply from block ``G`` on; cursors carry on, so no record of a
    task's epoch is dropped or repeated.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.packing import DROPPED, TRUNCATED, Packer, stack_rows
from flanforge.mixtures.shards import Manifest, ShardReader
from flanforge.mixtures.task import TaskError
from flanforge.mixtures.tokens import TextTokenizer


# ---- which task each example comes from -----------------------------------------


class Schedule:
    """The task of every example of the global stream, from the seed and the rates per block range.

    ``segments`` is ``[(first_block, {task: rate}), ...]`` in increasing order;
    each segment's rates hold until the next segment's first block.
    ``names`` fixes the task index used in pick arrays and cursor arrays.
    """

    def __init__(self, seed: int, block_size: int, segments: Sequence[tuple[int, dict[str, float]]], names: Sequence[str]):
        self.seed, self.block_size, self.names = seed, block_size, list(names)
        index = {n: i for i, n in enumerate(self.names)}
        self._starts = [start for start, _ in segments]
        self._tables = []
        for _, rates in segments:
            tasks = sorted(t for t, p in rates.items() if p > 0)
            cdf = np.cumsum([rates[t] for t in tasks])
            self._tables.append((cdf / cdf[-1], np.array([index[t] for t in tasks])))

    def picks(self, block: int) -> np.ndarray:
        """(block_size,) task indices of the block's examples, in stream order."""
        cdf, to_name = self._tables[bisect.bisect_right(self._starts, block) - 1]
        u = np.random.default_rng([self.seed, block]).random(self.block_size)
        return to_name[np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)]

    def counts(self, start: int, stop: int) -> np.ndarray:
        """(num_tasks,) how many examples each task has in blocks ``[start, stop)``."""
        total = np.zeros(len(self.names), dtype=np.int64)
        for b in range(start, stop):
            total += np.bincount(self.picks(b), minlength=len(self.names))
        return total


def _task_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


class EpochOrders:
    """Record order of each epoch of each task: shards shuffled, then records within each shard."""

    def __init__(self, seed: int, shard_sizes: dict[str, list[int]]):
        self.seed = seed
        self.shard_sizes = shard_sizes
        self._cache: dict[str, tuple[int, np.ndarray]] = {}  # task -> latest epoch used, its order

    def order(self, task: str, epoch: int) -> np.ndarray:
        cached = self._cache.get(task)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        sizes = self.shard_sizes[task]
        starts = np.cumsum([0] + sizes[:-1])
        rng = np.random.default_rng([self.seed, _task_key(task), epoch])
        order = np.concatenate([starts[s] + rng.permutation(sizes[s]) for s in rng.permutation(len(sizes))])
        self._cache[task] = (epoch, order)
        return order

    def locate(self, task: str, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record index and epoch of the ``ks``-th picks of ``task`` (ks ascending)."""
        n = sum(self.shard_sizes[task])
        epochs, pos = np.divmod(ks, n)
        records = np.empty_like(ks)
        for e in np.unique(epochs):
            sel = epochs == e
            records[sel] = self.order(task, int(e))[pos[sel]]
        return records, epochs


# ---- state ------------------------------------------------------------------------


@dataclass
class StreamState:
    """Where the global stream stands; independent of ranks and workers, small for any run length."""

    seed: int
    layout: dict[str, Any]
    segments: list[tuple[int, dict[str, float]]]
    """Rates in force from a block on; the last holds up to ``horizon``."""
    cursors: dict[str, int]
    """Per task: how many of its picks lie before ``frontier``."""
    frontier: int = 0
    """First block not fully consumed."""
    horizon: int = 0
    """One past the highest block any consumer touched."""
    partial: dict[int, int] = field(default_factory=dict)
    """Blocks in ``[frontier, horizon)`` with some rows consumed: rows consumed (a prefix)."""
    complete: list[int] = field(default_factory=list)
    """Blocks in ``[frontier, horizon)`` fully consumed."""
    micro_batches: int = 0
    """Micro-batches each rank consumed; lines DataLoader workers up with the uninterrupted run."""

    def schedule(self) -> Schedule:
        names = sorted(set(self.cursors).union(*(r for _, r in self.segments)))
        return Schedule(self.seed, self.layout["block_size"], self.segments, names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (block numbers as strings where they are keys)."""
        return {
            "seed": self.seed,
            "layout": dict(self.layout),
            "segments": [[start, dict(rates)] for start, rates in self.segments],
            "cursors": dict(self.cursors),
            "frontier": self.frontier,
            "horizon": self.horizon,
            "partial": {str(b): n for b, n in self.partial.items()},
            "complete": list(self.complete),
            "micro_batches": self.micro_batches,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "StreamState":
        return StreamState(
            seed=int(data["seed"]),
            layout=dict(data["layout"]),
            segments=[(int(start), {t: float(p) for t, p in rates.items()}) for start, rates in data["segments"]],
            cursors={t: int(k) for t, k in data["cursors"].items()},
            frontier=int(data["frontier"]),
            horizon=int(data["horizon"]),
            partial={int(b): int(n) for b, n in data["partial"].items()},
            complete=[int(b) for b in data["complete"]],
            micro_batches=int(data["micro_batches"]),
        )


class ConsumptionTracker:
    """What one rank's trainer consumed: per consumer, the last block touched and its rows consumed.

    A consumer yields its blocks' rows in order, so every earlier block of the
    same consumer is complete; that keeps the summary O(consumers of the rank).
    Over-length counters ride on each block's first row and are summed here.
    """

    def __init__(self, num_consumers: int, micro_batches: int = 0):
        self.num_consumers = num_consumers
        self.micro_batches = micro_batches
        self.lanes: dict[int, tuple[int, int, int]] = {}  # consumer -> (block, rows consumed, block rows)
        self.counters: dict[str, dict[str, int]] = {}  # task -> {"truncated": n, "dropped": n}

    def update(self, batch: dict[str, Any]) -> None:
        for block, row, rows in zip(batch["block"].tolist(), batch["row"].tolist(), batch["block_rows"].tolist()):
            lane = block % self.num_consumers
            if self.lanes.get(lane, (-1,))[0] <= block:
                self.lanes[lane] = (block, row + 1, rows)
        _add_counters(self.counters, batch["counters"])
        self.micro_batches += 1

    def summary(self) -> dict[str, Any]:
        """Small, picklable: what ``torch.distributed.all_gather_object`` carries to :func:`merge_state`."""
        return {
            "consumers": self.num_consumers,
            "micro_batches": self.micro_batches,
            "lanes": [list(v) for _, v in sorted(self.lanes.items())],
        }


def merge_state(prev: StreamState, summaries: Sequence[dict[str, Any]]) -> StreamState:
    """The state after ``prev`` once the ranks consumed what their tracker ``summaries`` say.

    ``prev`` is the state the stream started from, or the last merge result:
    the trackers' lanes are cumulative, and every lane block below its last one
    is complete either way.
    """
    consumers = {s["consumers"] for s in summaries}
    if len(consumers) > 1:
        raise ValueError(f"tracker summaries disagree on the number of consumers: {sorted(consumers)}")
    C = consumers.pop() if consumers else 1
    done = set(prev.complete)
    partial = dict(prev.partial)
    horizon = prev.horizon
    for summary in summaries:
        for block, consumed, rows in summary["lanes"]:
            first = prev.frontier + (block - prev.frontier) % C  # the lane's first block >= frontier
            done.update(range(first, block, C))
            if consumed >= rows:
                done.add(block)
            else:
                partial[block] = max(partial.get(block, 0), consumed)
            horizon = max(horizon, block + 1)
    frontier = prev.frontier
    while frontier in done:
        frontier += 1
    schedule = prev.schedule()
    advance = schedule.counts(prev.frontier, frontier)
    cursors = {name: prev.cursors.get(name, 0) + int(advance[i]) for i, name in enumerate(schedule.names)}
    return StreamState(
        seed=prev.seed,
        layout=prev.layout,
        segments=_segments_from(prev.segments, frontier),
        cursors=cursors,
        frontier=frontier,
        horizon=horizon,
        partial={b: n for b, n in sorted(partial.items()) if b >= frontier and b not in done and n > 0},
        complete=sorted(b for b in done if b >= frontier),
        micro_batches=max([prev.micro_batches] + [s["micro_batches"] for s in summaries]),
    )


def _segments_from(segments: list[tuple[int, dict[str, float]]], frontier: int) -> list[tuple[int, dict[str, float]]]:
    """Drop rate segments that end at or before ``frontier``."""
    starts = [start for start, _ in segments]
    first = max(bisect.bisect_right(starts, frontier) - 1, 0)
    return segments[first:]


# ---- the stream -------------------------------------------------------------------


class Row(NamedTuple):
    arrays: dict[str, np.ndarray]
    meta: list[dict[str, Any]]
    block: int
    index: int
    block_rows: int
    counters: dict[str, dict[str, int]]
    """Over-length counts of the block (and of earlier blocks of the consumer that packed no row), on its first row only."""


class MixtureStream(IterableDataset):
    """Packed micro-batches of a mixture for one rank, as a DataLoader ``IterableDataset`` (``batch_size=None``).

    Batch keys (decoder): ``input_ids``, ``labels``, ``position_ids``,
    ``segment_ids`` (B, T) long; T5 adds ``decoder_input_ids``,
    ``decoder_segment_ids``, ``decoder_position_ids`` and its ``labels`` are
    (B, T_dec). Always: ``meta`` (per row, per segment ``{"task", "group",
    "template_id", "format", "record", "epoch"}``), ``block``, ``row``,
    ``block_rows`` (B,) long for the tracker, and ``counters``
    (``{task: {"truncated": n, "dropped": n}}`` of the blocks starting in the batch).
    """

    def __init__(
        self,
        mixture: Mixture,
        tokenizer: TextTokenizer,
        cfg: StreamConfig,
        manifest: Manifest | str | Path,
        rank: int = 0,
        world_size: int = 1,
        state: dict[str, Any] | None = None,
        rate_overrides: dict[str, float] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.tokenizer = tokenizer
        self.manifest = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
        self.tasks = {t.name: t for t in mixture.tasks()}
        self.group_of = mixture.group_of()
        self.rates = mixture.rates(rate_overrides)  # raises when every rate is zero
        self.packer = Packer(
            cfg.arch, cfg.seq_len, cfg.target_len, cfg.overlong,
            cfg.include_inputs_in_loss, tokenizer.pad_id, tokenizer.eos_id,
        )
        # few-shot exemplars are dropped (whole) to fit a row: inputs + targets + EOS(s)
        self.fewshot_budget = cfg.seq_len - 1 if cfg.arch == "decoder" else cfg.seq_len + self.packer.target_len - 2
        self.reader = ShardReader(self.manifest, self.tasks)
        self.load_state_dict(state)

    @property
    def num_consumers(self) -> int:
        return self.world_size * max(self.cfg.num_workers, 1)

    # -- state

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Start from ``state`` (``None``: the beginning). Call before the DataLoader starts its workers."""
        layout = self.cfg.layout()
        if state is None:
            start = StreamState(self.cfg.seed, layout, [], {name: 0 for name in sorted(self.tasks)})
        else:
            start = StreamState.from_dict(state)
            saved, now = {"seed": start.seed, **start.layout}, {"seed": self.cfg.seed, **layout}
            # a key the saved layout lacks was not recorded by the version that saved it
            changed = [f"{k} (saved {saved[k]!r}, now {v!r})" for k, v in now.items() if k in saved and saved[k] != v]
            if changed:
                raise ValueError("the saved stream state cannot continue with this configuration: " + ", ".join(changed))
        # blocks below the horizon keep the rates they were drawn with; the current rates apply from it on
        segments = [(first, rates) for first, rates in start.segments if first < start.horizon]
        if not segments or segments[-1][1] != self.rates:
            segments.append((start.horizon, dict(self.rates)))
        start.segments = _segments_from(segments, start.frontier)
        for name in self.tasks:
            start.cursors.setdefault(name, 0)
        sampled = sorted({t for _, rates in start.segments for t, p in rates.items() if p > 0})
        missing = [t for t in sampled if t not in self.tasks]
        if missing:
            raise TaskError(f"the saved stream state still samples task(s) {missing}, which the mixture no longer has")
        self.manifest.check([self.tasks[t] for t in sampled])
        self._start = start
        self._base = start
        self.schedule = start.schedule()
        self.orders = EpochOrders(
            self.cfg.seed, {t: [s.num_records for s in self.manifest.shards(t)] for t in sampled}
        )

    def bad_records(self) -> dict[str, int]:
        """Per task: malformed source records skipped when its shards were prepared."""
        return {t: self.manifest.bad_records(t) for t in sorted(self.tasks) if t in self.manifest.tasks}

    def tracker(self) -> ConsumptionTracker:
        """A tracker for this rank; ``update`` it with every consumed batch."""
        return ConsumptionTracker(self.num_consumers, self._start.micro_batches)

    def state_dict(self, summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The canonical state, from every rank's ``tracker.summary()`` (all-gathered); the same on every rank.

        Each call merges into the result of the previous one (the trackers'
        summaries are cumulative), so only the blocks consumed since are counted.
        """
        self._base = merge_state(self._base, summaries)
        return self._base.to_dict()

    # -- iteration

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        if workers != max(self.cfg.num_workers, 1):
            raise ValueError(
                f"StreamConfig.num_workers={self.cfg.num_workers} but the DataLoader runs {workers} "
                "worker(s); build the loader with build_loader(stream)"
            )
        return self.worker_batches(info.id if info is not None else 0)

    def worker_batches(self, worker: int) -> Iterator[dict[str, Any]]:
        """The micro-batches DataLoader worker ``worker`` of this rank yields (tests call it in-process).

        Workers are rotated by the micro-batches already consumed, so the
        DataLoader's round-robin continues where the saved run stopped.
        """
        workers = max(self.cfg.num_workers, 1)
        lane = (worker + self._start.micro_batches) % workers
        rows: list[Row] = []
        for row in self._consumer_rows(self.rank * workers + lane):
            rows.append(row)
            if len(rows) == self.cfg.micro_batch_size:
                yield _collate(rows)
                rows = []

    def _consumer_rows(self, consumer: int) -> Iterator[Row]:
        start, C = self._start, self.num_consumers
        done = set(start.complete)
        block = start.frontier + (consumer - start.frontier) % C
        cursors = np.array([start.cursors.get(n, 0) for n in self.schedule.names], dtype=np.int64)
        cursors += self.schedule.counts(start.frontier, block)
        pending: dict[str, dict[str, int]] = {}  # counters not yet delivered (a block may pack no row)
        while True:
            if block not in done:
                skip = start.partial.get(block, 0)
                rows, counters = self._pack_block(block, cursors, skip)
                if skip == 0:  # else they came with the block's first row before the resume
                    _add_counters(pending, counters)
                for row in rows:
                    if pending:
                        row, pending = row._replace(counters=pending), {}
                    yield row
            cursors = cursors + self.schedule.counts(block, block + C)
            block += C

    def _pack_block(self, block: int, cursors: np.ndarray, skip: int) -> tuple[list[Row], dict[str, dict[str, int]]]:
        """Rows ``skip:`` of ``block``, whose task cursors are ``cursors``, and the block's over-length counters."""
        picks = self.schedule.picks(block)
        order = np.argsort(picks, kind="stable")
        by_task = picks[order]
        ks = np.empty_like(picks)
        ks[order] = cursors[by_task] + np.arange(len(picks)) - np.searchsorted(by_task, by_task)
        records, epochs = np.empty_like(picks), np.empty_like(picks)
        for t in np.unique(picks):
            sel = picks == t
            records[sel], epochs[sel] = self.orders.locate(self.schedule.names[t], ks[sel])

        examples, meta = [], []
        for t, rec, epoch in zip(picks.tolist(), records.tolist(), epochs.tolist()):
            name = self.schedule.names[t]
            rng = random.Random(f"{self.cfg.seed}/{name}/{rec}/{epoch}")
            task = self.tasks[name]
            ex = task.render(
                self.reader.record(name, rec), rng, rec,
                count_tokens=self._count_tokens, fewshot_budget=min(task.fewshot_budget, self.fewshot_budget),
            )
            examples.append(ex)
            meta.append({"task": name, "group": self.group_of[name], "template_id": ex.template_id,
                         "format": ex.format, "record": rec, "epoch": epoch})
        inputs = self.tokenizer.encode_batch([ex.inputs for ex in examples])
        targets = self.tokenizer.encode_batch([ex.targets for ex in examples])

        kept, counters = [], {}
        for i, (inp, tgt) in enumerate(zip(inputs, targets)):
            inp, tgt, status = self.packer.fit(inp, tgt)
            if status != DROPPED:
                kept.append((i, inp, tgt))
            if status in (TRUNCATED, DROPPED):
                _add_counters(counters, {meta[i]["task"]: {status: 1}})
        packed = self.packer.pack([self.packer.sizes(inp, tgt) for _, inp, tgt in kept])
        rows = []
        for r in range(skip, len(packed)):
            members = [kept[j] for j in packed[r]]
            arrays = self.packer.row([(inp, tgt) for _, inp, tgt in members])
            rows.append(Row(arrays, [meta[i] for i, _, _ in members], block, r, len(packed), {}))
        return rows, counters

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))


def _collate(rows: Sequence[Row]) -> dict[str, Any]:
    batch: dict[str, Any] = stack_rows([r.arrays for r in rows])  # (B, T) each
    batch["meta"] = [r.meta for r in rows]
    batch["block"] = torch.tensor([r.block for r in rows])
    batch["row"] = torch.tensor([r.index for r in rows])
    batch["block_rows"] = torch.tensor([r.block_rows for r in rows])
    batch["counters"] = {}
    for r in rows:
        _add_counters(batch["counters"], r.counters)
    return batch


def _add_counters(into: dict[str, dict[str, int]], counters: dict[str, dict[str, int]]) -> None:
    for task, counts in counters.items():
        mine = into.setdefault(task, {TRUNCATED: 0, DROPPED: 0})
        for key, n in counts.items():
            mine[key] += n


def _identity(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def build_loader(stream: MixtureStream, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``stream`` with its configured workers (forked: tasks need not pickle)."""
    workers = stream.cfg.num_workers
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        pin_memory=pin_memory,
        multiprocessing_context="fork" if workers > 0 else None,
    )
