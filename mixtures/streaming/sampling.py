"""Which record of which task every example of the global stream is (see ``mixtures/streaming/stream.py``).

Example ``g`` belongs to block ``b = g // block_size``. The tasks of a block's
examples are drawn by inverse-CDF sampling from a numpy Generator seeded with
``(seed, b)`` under the rates in force for that block (:class:`Schedule`), so a
block's picks cost O(block_size) and never depend on other blocks. The
``k``-th pick of task ``t`` (over the whole stream) reads position ``k % n_t``
of epoch ``k // n_t`` of ``t``'s record order (:class:`EpochOrders`): shards
shuffled, then the records within each shard, seeded by ``(seed, t, epoch)``.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Sequence

import numpy as np


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



def block_records(schedule: Schedule, orders: EpochOrders, block: int, cursors: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(picks, records, epochs)``, each (block_size,) in stream order: the task index, record
    index and epoch of every example of ``block``, whose task cursors are ``cursors`` (num_tasks,)."""
    picks = schedule.picks(block)
    order = np.argsort(picks, kind="stable")
    by_task = picks[order]
    ks = np.empty_like(picks)  # the k-th pick of its task over the whole stream
    ks[order] = cursors[by_task] + np.arange(len(picks)) - np.searchsorted(by_task, by_task)
    records, epochs = np.empty_like(picks), np.empty_like(picks)
    for t in np.unique(picks):
        sel = picks == t
        records[sel], epochs[sel] = orders.locate(schedule.names[t], ks[sel])
    return picks, records, epochs
