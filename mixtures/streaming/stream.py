"""The mixture stream: a world-size-independent global example stream, packed, split, resumable.

The global stream
    Which record of which task each example is: ``mixtures/streaming/sampling.py``
    (blocks of ``block_size`` examples, tasks drawn per block under the rates in
    force, per-task epoch orders). Each example is rendered with
    ``random.Random("seed/task/record/epoch")``, so template and format are a
    function of those four, tokenised, and the whole block is packed into rows
    (first-fit decreasing); rows never mix blocks, so a block's rows are a
    deterministic function of the block. :meth:`MixtureStream._pack_block` runs
    these steps in order: locate, render, tokenise, fit, pack.

Consumers
    A consumer is a (rank, DataLoader worker) pair; there are
    ``C = world_size * max(num_workers, 1)``. Consumer ``c`` packs the blocks
    ``b ≡ c (mod C)`` in increasing order and yields their rows, in order, in
    micro-batches of ``micro_batch_size`` rows (a micro-batch may span two of
    its blocks). A task's cursor at block ``b`` is its cursor at a known block
    plus the pick counts of the blocks in between (cheap: no rendering).

State and resume
    What the trainer consumed and the stream's state: ``mixtures/streaming/stream_state.py``.
    A resumed stream starts each consumer at its first block ``>= F`` (the
    frontier), skipping complete blocks and consumed rows: the same world size
    and workers reproduce the uninterrupted batches exactly; another consumer
    count still consumes every row of the global stream exactly once. New
    mixture rates apply from block ``G`` (the horizon) on; cursors carry on, so
    no record of a task's epoch is dropped or repeated.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.streaming.packing import DROPPED, TRUNCATED, PackedBatch, Packer, stack_rows
from flanforge.mixtures.streaming.sampling import EpochOrders, block_records
from flanforge.mixtures.streaming.shards import Manifest, ShardInfo, ShardReader
from flanforge.mixtures.streaming.stream_state import ConsumptionTracker, StreamState, add_counters, merge_state, segments_from
from flanforge.mixtures.task import Example, TaskError
from flanforge.mixtures.tokens import TextTokenizer

CORRUPT = "corrupt"
"""The counter of records skipped because their shard member is corrupt (next to the over-length ones)."""
RETRIES = "retries"
"""The counter of remote reads retried (``mixtures/storage/retry.py``), kept under :data:`NO_TASK`."""
NO_TASK = ""
"""The counters' key for counts of no task (the store's retries)."""


class Row(NamedTuple):
    arrays: dict[str, np.ndarray]
    meta: list[dict[str, Any]]
    block: int
    index: int
    block_rows: int
    counters: dict[str, dict[str, int]]
    """Over-length and corrupt-record counts of the block (and of earlier blocks of the consumer that packed no row),
    on its first row only."""


class MixtureStream(IterableDataset):
    """Packed micro-batches (:class:`PackedBatch`) of a mixture for one rank, as a DataLoader
    ``IterableDataset`` (``batch_size=None``)."""

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
        self.reader = ShardReader(self.manifest, self.tasks, on_bad_member=cfg.on_bad_record)
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
        start.segments = segments_from(segments, start.frontier)
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

    def __iter__(self) -> Iterator[PackedBatch]:
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        if workers != max(self.cfg.num_workers, 1):
            raise ValueError(
                f"StreamConfig.num_workers={self.cfg.num_workers} but the DataLoader runs {workers} "
                "worker(s); build the loader with build_loader(stream)"
            )
        return self.worker_batches(info.id if info is not None else 0)

    def worker_batches(self, worker: int) -> Iterator[PackedBatch]:
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
        retried = self.reader.retries()  # this process's store: its retries from here on are this consumer's
        while True:
            if block not in done:
                self._read_ahead(block, cursors, done)
                skip = start.partial.get(block, 0)
                rows, counters = self._pack_block(block, cursors, skip)
                if skip == 0:  # else they came with the block's first row before the resume
                    add_counters(pending, counters)
                now = self.reader.retries()
                if now > retried:
                    add_counters(pending, {NO_TASK: {RETRIES: now - retried}})
                retried = now
                for row in rows:
                    if pending:
                        row, pending = row._replace(counters=pending), {}
                    yield row
            cursors = cursors + self.schedule.counts(block, block + C)
            block += C

    def _read_ahead(self, block: int, cursors: np.ndarray, done: set[int]) -> None:
        """Remote shards: keep open only the shards this block reads, and fetch them and those of this
        consumer's next ``read_ahead`` blocks in the background (the schedule names every future record)."""
        if not self.reader.remote:
            return
        wanted: list[ShardInfo] = []
        for ahead in range(1 + self.reader.manifest.store.read_ahead):
            if block not in done:
                picks, records, _ = block_records(self.schedule, self.orders, block, cursors)
                pieces = [p for t in np.unique(picks).tolist()
                          for p in self.reader.pieces(self.schedule.names[t], records[picks == t])]
                if ahead == 0:
                    self.reader.retain(pieces)
                wanted += pieces
            cursors = cursors + self.schedule.counts(block, block + self.num_consumers)
            block += self.num_consumers
        self.reader.prefetch(wanted)

    def _pack_block(self, block: int, cursors: np.ndarray, skip: int) -> tuple[list[Row], dict[str, dict[str, int]]]:
        """Rows ``skip:`` of ``block``, whose task cursors are ``cursors``, and the block's over-length counters."""
        picks, records, epochs = block_records(self.schedule, self.orders, block, cursors)
        examples, meta, counters = self._render(picks, records, epochs)
        inputs = self.tokenizer.encode_batch([ex.inputs for ex in examples])
        targets = self.tokenizer.encode_batch([ex.targets for ex in examples])
        kept, overlong = self._fit(inputs, targets, meta)
        add_counters(counters, overlong)
        return self._rows(block, kept, meta, skip), counters

    def _render(self, picks: np.ndarray, records: np.ndarray, epochs: np.ndarray) -> tuple[list[Example], list[dict], dict]:
        """Every example of a block read from its shards and rendered, with its meta, in stream order, and
        the records skipped because their shard member is corrupt (``on_bad_record: skip``), per task."""
        examples, meta, skipped = [], [], {}
        for t, rec, epoch in zip(picks.tolist(), records.tolist(), epochs.tolist()):
            name = self.schedule.names[t]
            record = self.reader.record(name, rec)
            if record is None:
                add_counters(skipped, {name: {CORRUPT: 1}})
                continue
            rng = random.Random(f"{self.cfg.seed}/{name}/{rec}/{epoch}")
            task = self.tasks[name]
            ex = task.render(
                record, rng, rec,
                count_tokens=self._count_tokens, fewshot_budget=min(task.fewshot_budget, self.fewshot_budget),
            )
            examples.append(ex)
            meta.append({"task": name, "group": self.group_of[name], "template_id": ex.template_id,
                         "format": ex.format, "record": rec, "epoch": epoch})
        return examples, meta, skipped

    def _fit(self, inputs: list[list[int]], targets: list[list[int]], meta: list[dict]) -> tuple[list, dict]:
        """The over-length policy: ``(kept [(example index, input ids, target ids)], counters)``."""
        kept, counters = [], {}
        for i, (inp, tgt) in enumerate(zip(inputs, targets)):
            inp, tgt, status = self.packer.fit(inp, tgt)
            if status != DROPPED:
                kept.append((i, inp, tgt))
            if status in (TRUNCATED, DROPPED):
                add_counters(counters, {meta[i]["task"]: {status: 1}})
        return kept, counters

    def _rows(self, block: int, kept: list, meta: list[dict], skip: int) -> list[Row]:
        """Pack the kept examples into rows (first-fit decreasing) and lay out rows ``skip:``."""
        packed = self.packer.pack([self.packer.sizes(inp, tgt) for _, inp, tgt in kept])
        rows = []
        for r in range(skip, len(packed)):
            members = [kept[j] for j in packed[r]]
            arrays = self.packer.row([(inp, tgt) for _, inp, tgt in members])
            rows.append(Row(arrays, [meta[i] for i, _, _ in members], block, r, len(packed), {}))
        return rows

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))


def _collate(rows: Sequence[Row]) -> PackedBatch:
    counters: dict[str, dict[str, int]] = {}
    for r in rows:
        add_counters(counters, r.counters)
    return PackedBatch(
        tensors=stack_rows([r.arrays for r in rows]),  # (B, T) each
        meta=[r.meta for r in rows],
        block=torch.tensor([r.block for r in rows]),
        row=torch.tensor([r.index for r in rows]),
        block_rows=torch.tensor([r.block_rows for r in rows]),
        counters=counters,
    )


def _identity(batch: PackedBatch) -> PackedBatch:
    return batch


def build_loader(stream: MixtureStream, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``stream`` with its configured workers (forked: tasks need not pickle); batches in
    pinned host memory for a GPU (``pin_memory``), so their copies to it overlap compute."""
    workers = stream.cfg.num_workers
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        pin_memory=pin_memory,
        multiprocessing_context="fork" if workers > 0 else None,
    )
