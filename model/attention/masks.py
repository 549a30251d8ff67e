"""Masks shared by implementations and evaluation: the dense segment mask, the token-tree mask,
each example's token ranges, and :class:`DenseMask` (the segment mask through a kernel of
transformers' own). Dense masks are float (0 where allowed, the dtype's minimum elsewhere):
a bool 4D mask is misread by transformers' eager path. torch is imported where a mask is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from flanforge.model.attention.base import Attention

if TYPE_CHECKING:
    import torch

Segments = list[list[tuple[int, int]]]
"""Per row, the ``(start, stop)`` token range of each example, in order."""


def _float_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, Tq, Tk): 0 where ``allowed`` (B, Tq, Tk), the dtype's minimum elsewhere."""
    import torch

    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def segment_mask(
    q_segments: torch.Tensor,
    k_segments: torch.Tensor,
    *,
    causal: bool,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Float mask letting a query attend only to keys of its own segment (and the past if causal).

    ``q_segments`` (B, Tq) and ``k_segments`` (B, Tk) hold 1..k per example and 0
    for padding. A padding query attends to itself only (self-attention) or to
    nothing useful, but never produces NaNs: it keeps one allowed key. ``dtype``:
    float32 by default.
    """
    import torch

    same = q_segments[:, :, None] == k_segments[:, None, :]  # (B, Tq, Tk)
    allowed = same & (k_segments[:, None, :] > 0)
    if causal:
        tq, tk = q_segments.shape[1], k_segments.shape[1]
        allowed &= torch.ones(tq, tk, dtype=torch.bool, device=q_segments.device).tril()
    # Rows with no allowed key (padding queries) get key 0 so softmax stays finite;
    # their outputs are never used in the loss.
    empty = ~allowed.any(dim=-1)
    allowed[..., 0] |= empty
    return _float_mask(allowed, dtype or torch.float32)  # (B, 1, Tq, Tk)


def tree_mask(parents: torch.Tensor, depths: torch.Tensor, *, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Float mask for rows of token trees (evaluation, ``launcher/evaluation/prefix_trie.py``): a position sees
    itself and its ancestors only, whatever the order of the positions in the row.

    ``parents`` (B, T): the position of each token's parent in its row, -1 for a root and for
    padding (which then sees itself only: no NaNs); ``depths`` (B, T): each token's depth (0 for
    a root, its parent's plus one otherwise: the position ids). A path from a root is thus
    computed as if it were a sequence alone. Built on the host, one depth at a time (a token
    sees what its parent sees, and itself). ``dtype``: float32 by default.
    """
    import numpy as np
    import torch

    parent, depth = parents.cpu().numpy(), depths.cpu().numpy().ravel()
    batch, length = parent.shape
    rows, queries = np.divmod(np.arange(batch * length), length)
    allowed = np.zeros((batch, length, length), dtype=bool)
    allowed[rows, queries, queries] = True
    by_depth = np.argsort(depth, kind="stable")
    starts = np.searchsorted(depth[by_depth], np.arange(1, depth.max() + 2))
    for start, stop in zip(starts[:-1], starts[1:]):
        b, q = rows[by_depth[start:stop]], queries[by_depth[start:stop]]
        allowed[b, q] |= allowed[b, parent[b, q]]
    return _float_mask(torch.from_numpy(allowed).to(parents.device), dtype or torch.float32)  # (B, 1, T, T)


def segment_ranges(segment_ids: torch.Tensor) -> Segments:
    """The ``(start, stop)`` of every example of every row, from host-side segment ids (B, T)
    as the packer lays them out (1..k, each example's tokens contiguous, 0 for padding)."""
    out: Segments = []
    for row in segment_ids.tolist():
        ranges, start = [], 0
        for t in range(1, len(row) + 1):
            if t == len(row) or row[t] != row[start]:
                if row[start] > 0:
                    ranges.append((start, t))
                start = t
        out.append(ranges)
    return out


class DenseMask(Attention):
    """A dense 4D float mask ``(B, 1, Tq, Tk)`` from the segment ids (:func:`segment_mask`),
    through the transformers kernel named :attr:`hf_name`. Runs anywhere."""

    def mask(self, q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool, dtype: torch.dtype):
        return segment_mask(q_segments, k_segments, causal=causal, dtype=dtype)
