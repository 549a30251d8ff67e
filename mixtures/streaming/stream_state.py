"""The state of the global stream, what one rank consumed, and how the ranks' records merge.

Every batch carries, per row, ``block``, ``row`` and ``block_rows``. A
:class:`ConsumptionTracker` on each rank records what the trainer consumed
(not what workers prefetched); at a checkpoint the ranks' small summaries are
gathered and merged (:func:`merge_state`) into a :class:`StreamState`: the
frontier ``F`` (first block not fully consumed), every task's cursor at ``F``,
the rows consumed of the blocks in ``[F, G)`` (``G`` = one past the highest
block touched), the rates in force for blocks ``< G`` and the seed. Its size
does not grow with the steps run and nothing in it depends on ranks or workers.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence

from flanforge.mixtures.streaming.packing import DROPPED, TRUNCATED, PackedBatch
from flanforge.mixtures.streaming.sampling import Schedule


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
    Over-length and corrupt-record counters ride on each block's first row and are summed here.
    """

    def __init__(self, num_consumers: int, micro_batches: int = 0):
        self.num_consumers = num_consumers
        self.micro_batches = micro_batches
        self.lanes: dict[int, tuple[int, int, int]] = {}  # consumer -> (block, rows consumed, block rows)
        self.counters: dict[str, dict[str, int]] = {}  # task -> {"truncated": n, "dropped": n[, "corrupt": n]}

    def update(self, batch: PackedBatch) -> None:
        for block, row, rows in zip(batch.block.tolist(), batch.row.tolist(), batch.block_rows.tolist()):
            lane = block % self.num_consumers
            if self.lanes.get(lane, (-1,))[0] <= block:
                self.lanes[lane] = (block, row + 1, rows)
        add_counters(self.counters, batch.counters)
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
        segments=segments_from(prev.segments, frontier),
        cursors=cursors,
        frontier=frontier,
        horizon=horizon,
        partial={b: n for b, n in sorted(partial.items()) if b >= frontier and b not in done and n > 0},
        complete=sorted(b for b in done if b >= frontier),
        micro_batches=max([prev.micro_batches] + [s["micro_batches"] for s in summaries]),
    )


def segments_from(segments: list[tuple[int, dict[str, float]]], frontier: int) -> list[tuple[int, dict[str, float]]]:
    """Drop rate segments that end at or before ``frontier``."""
    starts = [start for start, _ in segments]
    first = max(bisect.bisect_right(starts, frontier) - 1, 0)
    return segments[first:]


def add_counters(into: dict[str, dict[str, int]], counters: dict[str, dict[str, int]]) -> None:
    """Add per-task counts (over-length: ``{task: {"truncated": n, "dropped": n}}``; records of corrupt
    shard members skipped: ``"corrupt"``) into ``into``."""
    for task, counts in counters.items():
        mine = into.setdefault(task, {TRUNCATED: 0, DROPPED: 0})
        for key, n in counts.items():
            mine[key] = mine.get(key, 0) + n
