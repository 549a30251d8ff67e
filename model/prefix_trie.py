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


class TrieRow:
    """One row: node ``i`` is token ``tokens[i]`` at position ``depths[i]`` under node ``parents[i]`` (-1: a root).

    Nodes are numbered in creation order, so a parent comes before its children.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self._children: dict[tuple[int, int], int] = {}  # (parent, token) -> node
        self._below: dict[int, list[int]] = {}  # node (-1: the roots) -> its children

    def __len__(self) -> int:
        return len(self.tokens)

    def _add(self, parent: int, token: int) -> int:
        self._children[(parent, token)] = node = len(self.tokens)
        self._below.setdefault(parent, []).append(node)
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1 if parent >= 0 else 0)
        return node

    def insert(self, sequences: Sequence[Ids]) -> list[list[int]]:
        """Add ``sequences``; their node paths (one node per token)."""
        paths = []
        for sequence in sequences:
            node, path = -1, []
            for token in sequence:
                key = (node, token)
                node = self._children[key] if key in self._children else self._add(*key)
                path.append(node)
            paths.append(path)
        return paths

    def shared(self, other: TrieRow) -> int:
        """How many nodes of the trie ``other`` this row has already (a walk over those only)."""
        count, stack = 0, [(n, -1) for n in other._below.get(-1, [])]
        while stack:
            n, up = stack.pop()
            node = self._children.get((up, other.tokens[n]), -1)
            if node >= 0:
                count += 1
                stack += [(child, node) for child in other._below.get(n, [])]
        return count

    def merge(self, other: TrieRow) -> list[int]:
        """Add the trie ``other``; where each of its nodes is in this row."""
        where: list[int] = []
        for token, parent in zip(other.tokens, other.parents):
            key = (where[parent] if parent >= 0 else -1, token)
            where.append(self._children[key] if key in self._children else self._add(*key))
        return where


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


def pack(requests: Sequence[Request], key_cost: float, limit: int = ROW_LIMIT) -> tuple[list[TrieRow], list[list[Read]]]:
    """Rows holding every request's trie, and per request, per option, its :class:`Read`.

    ``key_cost`` is the work of attending to one key relative to a position's work in the linear
    layers, so a batch of ``n`` rows padded to ``W`` positions costs about ``n W (1 + key_cost W)``:
    longer rows share more prefixes but attend over more keys. Caps from the largest request's trie,
    times 4 up to ``limit``, are tried (see the module doc for the placement), the cheapest wins, and
    its rows are evened out: the smallest cap that needs no more rows (less padding).
    """
    own = [TrieRow() for _ in requests]  # each request's own trie
    paths = [trie.insert(option_sequences(r)) for trie, r in zip(own, requests)]
    caps = [max(map(len, own))]
    while caps[-1] < min(limit, sum(map(len, own))):
        caps.append(min(4 * caps[-1], limit))

    def cost(rows: list[TrieRow]) -> float:
        width = max(caps[0], -(-sum(map(len, rows)) // len(rows)))  # evened out
        return len(rows) * width * (1 + key_cost * width)

    rows, where = min((_place(own, cap) for cap in caps), key=lambda placed: cost(placed[0]))
    low, high = max(caps[0], -(-sum(map(len, rows)) // len(rows))), max(map(len, rows))
    while high - low > high // 16:  # a binary search for the smallest cap that needs no more rows, to ~6 %
        mid = (low + high) // 2
        trial = _place(own, mid)
        if len(trial[0]) <= len(rows):
            (rows, where), high = trial, max(map(len, trial[0]))
        else:
            low = mid + 1
    reads = []
    for (prompt, options), request_paths, (r, mapping) in zip(requests, paths, where):
        start = len(prompt) - 1  # option token j is predicted at the node of the token before it
        reads.append([Read(r, [mapping[n] for n in path[start:start + len(option)]], list(option))
                      for path, option in zip(request_paths, options)])
    return rows, reads


def _place(tries: list[TrieRow], cap: int) -> tuple[list[TrieRow], list[tuple[int, list[int]]]]:
    """Rows holding ``tries`` (largest first, into the fitting row they add least to), and per trie its
    row and where its nodes are there."""
    rows: list[TrieRow] = []
    where: list[tuple[int, list[int]]] = [(0, [])] * len(tries)
    for i in sorted(range(len(tries)), key=lambda i: -len(tries[i])):  # stable: ties keep request order
        size = len(tries[i])
        fits = [(cost, r) for r, row in enumerate(rows) if len(row) + (cost := size - row.shared(tries[i])) <= cap]
        r = min(fits)[1] if fits else len(rows)
        if r == len(rows):
            rows.append(TrieRow())
        where[i] = (r, rows[r].merge(tries[i]))
    return rows, where
