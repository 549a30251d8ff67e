"""Token tries for rank classification: every shared prefix of a batch is fed to the model once.

A decoder scores option ``o`` of prompt ``p`` from one forward over ``p + o[:-1]``
(option token j is predicted at the position before it; ``o``'s last token is
never fed). The sequences of a batch share beginnings — a task's instruction,
its few-shot exemplars, the first tokens of its options, whole duplicate
requests — so they are laid out as a token trie: each node is one token
position, at the depth it would have in its sequence alone, and attends to
itself and its ancestors only (:func:`flanforge.model.attention.tree_mask`).
Each node then computes exactly what that position computes in any one of the
sequences through it.

Tries are packed into rows (the attention mask is ``(rows, 1, T, T)`` and
masked attention costs grow with ``T``): requests are placed largest first,
each into the row where it adds the fewest nodes among those it fits in (the
first such row on a tie; a new row when none has room) — first-fit decreasing
that prefers the row sharing most with the request. The row cap is chosen by
a cost estimate (:func:`pack`). Pure Python, no torch: the benchmark counts
the positions of a layout without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

Ids = Sequence[int]
Request = tuple[Ids, Sequence[Ids]]
"""``(prompt, [option, ...])``: token ids; every option scored given the prompt."""
ROW_LIMIT = 4096
"""The longest rows :func:`pack` tries (a request's own trie may be longer: it gets a row alone)."""


class Trie:
    """A token trie: node ``i`` is token ``tokens[i]`` at position ``depths[i]`` under node ``parents[i]``
    (-1: a root). Nodes are numbered in creation order, so a parent comes before its children."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self._children: dict[tuple[int, int], int] = {}  # (parent, token) -> node

    def __len__(self) -> int:
        return len(self.tokens)

    def insert(self, sequences: Sequence[Ids]) -> list[list[int]]:
        """Add ``sequences``; their node paths (one node per token)."""
        paths = []
        for sequence in sequences:
            node, path = -1, []
            for token in sequence:
                key = (node, token)
                if key not in self._children:
                    self._children[key] = len(self.tokens)
                    self.tokens.append(token)
                    self.parents.append(node)
                    self.depths.append(self.depths[node] + 1 if node >= 0 else 0)
                node = self._children[key]
                path.append(node)
            paths.append(path)
        return paths

    def subtrie(self, nodes: Sequence[int]) -> tuple[Trie, dict[int, int]]:
        """The trie of ``nodes`` (closed under parents, in creation order) and where each node went."""
        out, where = Trie(), {}
        for node in nodes:
            parent = self.parents[node]
            where[node] = len(out.tokens)
            out.tokens.append(self.tokens[node])
            out.parents.append(where[parent] if parent >= 0 else -1)
            out.depths.append(self.depths[node])
        return out, where


@dataclass(frozen=True)
class Read:
    """Where one option's log-likelihood is read: the nodes predicting its tokens, in one row."""

    row: int
    nodes: list[int]
    targets: list[int]


def option_sequences(request: Request) -> list[list[int]]:
    """The sequences a decoder feeds for ``request``: ``prompt + option[:-1]`` per option."""
    prompt, options = request
    return [[*prompt, *option[:-1]] for option in options]


def pack(requests: Sequence[Request], key_cost: float, limit: int = ROW_LIMIT, past: int = 0
         ) -> tuple[list[Trie], list[list[Read]]]:
    """Rows (tries) holding every request, and per request, per option, its :class:`Read`.

    ``key_cost`` is the work of attending to one key relative to a position's work in the linear
    layers, so a batch of ``n`` rows padded to ``W`` positions, each after ``past`` positions it also
    attends to, costs about ``n W (1 + key_cost (past + W))``: longer rows share more prefixes but
    attend over more keys. Caps from the largest request's trie
    doubling up to ``limit`` are tried while the estimate falls (see the module doc for the placement);
    the cheapest layout's rows are then evened out: the smallest cap that needs no more rows (less padding).
    """
    whole = Trie()  # one trie of the whole batch: a request is the set of its nodes there
    paths = [whole.insert(option_sequences(r)) for r in requests]
    own = [frozenset(n for path in request_paths for n in path) for request_paths in paths]
    largest, total = max(map(len, own)), len(whole)

    def cost(rows: list[set[int]]) -> float:
        nodes = sum(map(len, rows))  # evened out, the rows still differ by about half a request
        width = max(largest, (nodes / len(rows)) + nodes / (2 * len(requests)))
        return len(rows) * width * (1 + key_cost * (past + width))

    cap, (rows, where) = largest, _place(own, largest)
    while cap < min(limit, total):  # caps doubling while the estimate falls
        cap = min(2 * cap, limit)
        trial = _place(own, cap)
        if cost(trial[0]) >= cost(rows):
            break
        rows, where = trial
    low, high = max(largest, -(-sum(map(len, rows)) // len(rows))), max(map(len, rows))
    while high - low > high // 16:  # a binary search for the smallest cap that needs no more rows, to ~6 %
        mid = (low + high) // 2
        trial = _place(own, mid)
        if len(trial[0]) <= len(rows):
            (rows, where), high = trial, max(map(len, trial[0]))
        else:
            low = mid + 1
    tries = [whole.subtrie(sorted(row)) for row in rows]
    reads = []
    for (prompt, options), request_paths, r in zip(requests, paths, where):
        start = len(prompt) - 1  # option token j is predicted at the node of the token before it
        reads.append([Read(r, [tries[r][1][n] for n in path[start:start + len(option)]], list(option))
                      for path, option in zip(request_paths, options)])
    return [trie for trie, _ in tries], reads


def _place(requests: list[frozenset[int]], cap: int) -> tuple[list[set[int]], list[int]]:
    """Rows (node sets) holding ``requests`` (node sets; largest first, each into the fitting row it adds
    least to), and each request's row."""
    rows: list[set[int]] = []
    where = [0] * len(requests)
    for i in sorted(range(len(requests)), key=lambda i: -len(requests[i])):  # stable: ties keep request order
        fits = [(cost, r) for r, row in enumerate(rows) if len(row) + (cost := len(requests[i] - row)) <= cap]
        r = min(fits)[1] if fits else len(rows)
        if r == len(rows):
            rows.append(set())
        rows[r] |= requests[i]
        where[i] = r
    return rows, where
