"""segments: no mask at all: causal ``scaled_dot_product_attention`` on each example of a row
alone (a varlen kernel's layout, one call per example), from the examples' token ranges computed
on the host. No score across a boundary is computed: on rows of two or three examples, 2-3x less
attention work than the dense mask. Decoder-only (T5's relative position bias and cross-attention
take a mask); without ranges (the model's own forward) it is transformers' sdpa. ``auto`` trains
decoders with it where FlexAttention cannot run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flanforge.model.attention.base import Attention, AttentionUnavailable, register
from flanforge.model.attention.masks import Segments

if TYPE_CHECKING:
    import torch


class PerSegment(Attention):
    name = "segments"
    hf_name = "flanforge_segments"
    training_priority = 20

    def unavailable_reason(self, device_type: str, *, training: bool, dropout: float, arch: str) -> str | None:
        if arch != "decoder":
            return "per-segment attention runs decoder-only models (T5's bias and cross-attention take a mask)"
        return None

    def mask(self, q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool, dtype: torch.dtype):
        return None  # the attention function takes the examples' ranges

    def forward(self, module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                segments: Segments | None = None, **kwargs):
        """transformers attention function: causal attention within each example of a row.

        query (B, Hq, T, D), key and value (B, Hkv, T, D); returns ((B, T, Hq, D), None).
        Padding positions get zeros (their outputs never reach the loss). Without
        ``segments`` (the model's own forward) it is transformers' sdpa attention.
        """
        import torch
        from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

        if segments is None:
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                          **kwargs)
        if kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None:
            raise AttentionUnavailable("model.attention=segments supports neither softcapped nor sliding-window "
                                       "attention")
        groups = getattr(module, "num_key_value_groups", 1)
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        rows = [_attend_row(query[b:b + 1], key[b:b + 1], value[b:b + 1], ranges, dropout=dropout, scaling=scaling)
                for b, ranges in enumerate(segments)]
        return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None  # (B, T, H, D)


def _attend_row(query, key, value, ranges: list[tuple[int, int]], *, dropout: float, scaling):
    """Causal SDPA on each ``(start, stop)`` range of one row (1, H, T, D) alone; zeros for padding."""
    import torch
    import torch.nn.functional as F

    _, heads, length, dim = query.shape
    parts, at = [], 0
    for start, stop in [*ranges, (length, length)]:
        if start > at:  # padding
            parts.append(query.new_zeros(1, heads, start - at, dim))
        if stop > start:
            parts.append(F.scaled_dot_product_attention(
                query[:, :, start:stop], key[:, :, start:stop], value[:, :, start:stop],
                dropout_p=dropout, scale=scaling, is_causal=True))  # (1, H, stop - start, D)
        at = stop
    return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]


register(PerSegment())
