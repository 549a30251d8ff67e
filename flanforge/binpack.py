"""First-fit decreasing bin packing: which examples share a row.

A leaf module: it imports nothing of the project. The data layer packs
training rows with it (``mixtures/streaming/packing.py``); evaluation rows are packed
by what their token tries share instead (``launcher/evaluation/prefix_trie.py``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def first_fit_decreasing(sizes: Sequence[Sequence[int]], capacity: Sequence[int]) -> list[list[int]]:
    """Rows as lists of example indices, for ``sizes`` (n, dims) and a row's ``capacity`` (dims).

    Examples are placed largest first (ties by index, so the result is a
    function of the sizes alone) into the first row with room in every
    dimension; a new row opens when none has room.
    """
    cap = np.asarray(capacity, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, len(cap))
    if (sizes > cap).any():
        raise ValueError(f"an example is larger than a row {tuple(cap)}; fit() it first")
    order = np.argsort(-(sizes / cap).sum(axis=1), kind="stable")
    free = np.empty((len(sizes), len(cap)), dtype=np.int64)  # room left in each open row
    rows: list[list[int]] = []
    for i in order:
        room = np.flatnonzero((free[: len(rows)] >= sizes[i]).all(axis=1))
        j = int(room[0]) if len(room) else len(rows)
        if j == len(rows):
            rows.append([])
            free[j] = cap
        rows[j].append(int(i))
        free[j] -= sizes[i]
    return rows
