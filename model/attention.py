"""Attention that keeps packed examples apart.

Two ways, one result (``tests/model/test_packed_isolation.py``):

- ``segment_mask``: a dense block-diagonal float mask ``(B, 1, Tq, Tk)`` (0 where
  allowed, the dtype's minimum elsewhere), which transformers' sdpa/eager paths
  take as they are. Position ids that restart per example do not by themselves
  stop attention across examples; the mask does. A bool 4D mask is misread by
  the eager path, so the float form is used. The whole ``T x T`` score matrix is
  still computed, and the mask then discards what crosses a boundary.
- ``SEGMENT_ATTENTION``: an attention implementation registered with
  transformers that runs causal attention on each example of a row alone
  (``torch.nn.functional.scaled_dot_product_attention`` per segment, the way
  varlen kernels do on GPUs). No mask is built and no score across a boundary is
  computed: for rows of two or three examples that is 2-3x less attention work.
  The decoder uses it; without ``segments`` (a plain HF forward, e.g. at export
  or evaluation) it is exactly transformers' sdpa attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SEGMENT_ATTENTION = "flanforge_segments"

Segments = list[list[tuple[int, int]]]
"""Per row, the ``(start, stop)`` token range of each example, in order; padding after the last."""


def _to_float(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)  # (B, 1, Tq, Tk)


def segment_mask(
    q_segments: torch.Tensor,
    k_segments: torch.Tensor,
    *,
    causal: bool,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Float mask letting a query attend only to keys of its own segment (and the past if causal).

    ``q_segments`` (B, Tq) and ``k_segments`` (B, Tk) hold 1..k per example and 0
    for padding. A padding query attends to itself only (self-attention) or to
    nothing useful, but never produces NaNs: it keeps one allowed key.
    """
    same = q_segments[:, :, None] == k_segments[:, None, :]  # (B, Tq, Tk)
    allowed = same & (k_segments[:, None, :] > 0)
    if causal:
        tq, tk = q_segments.shape[1], k_segments.shape[1]
        allowed &= torch.ones(tq, tk, dtype=torch.bool, device=q_segments.device).tril()
    # Rows with no allowed key (padding queries) get key 0 so softmax stays finite;
    # their outputs are never used in the loss.
    empty = ~allowed.any(dim=-1)
    allowed[..., 0] |= empty
    return _to_float(allowed, dtype)


def segment_ranges(segment_ids: torch.Tensor) -> Segments:
    """The ``(start, stop)`` of every example of every row, from host-side segment ids (B, T)
    laid out as the packer lays them (1..k back to back, 0 for padding at the end)."""
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


def segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    segments: Segments | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal self-attention within each segment; query (B, Hq, T, D), key/value (B, Hkv, T, D).

    Returns (B, T, Hq, D) as transformers' attention functions do. Padding
    positions get zeros (their outputs never reach the loss).
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None:
        raise ValueError(f"{SEGMENT_ATTENTION} attention supports neither softcap nor sliding windows")
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    batch, heads, length, dim = query.shape
    rows = []
    for b, ranges in enumerate(segments):
        parts, at = [], 0
        for s, e in [*ranges, (length, length)]:
            if s > at:  # padding
                parts.append(query.new_zeros(1, heads, s - at, dim))
            if e > s:
                parts.append(F.scaled_dot_product_attention(
                    query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                    dropout_p=dropout, scale=scaling, is_causal=True))  # (1, H, e - s, D)
            at = e
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None  # (B, T, H, D)


def register_segment_attention() -> None:
    """Make ``SEGMENT_ATTENTION`` a transformers attention implementation (masks built as for sdpa)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SEGMENT_ATTENTION, sdpa_mask)
