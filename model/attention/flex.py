"""flex: FlexAttention (``torch.nn.attention.flex_attention``) with a ``BlockMask`` built from the
segment ids, as torchtitan masks documents: blocks with no allowed (query, key) pair are skipped
and no (Tq, Tk) mask is kept. Compiled on CUDA. torch has no FlexAttention backward on CPU, so
there it runs forward only (evaluation, tests). No attention dropout. ``auto`` trains with it
first where it can run.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

from flanforge.model.attention.base import Attention, AttentionUnavailable, register

if TYPE_CHECKING:
    import torch

BLOCK_SIZE = 128


def flex_available() -> bool:
    try:
        import torch.nn.attention.flex_attention  # noqa: F401  (torch >= 2.5)
    except ImportError:
        return False
    return True


def segment_block_mask(q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool,
                       block_size: int = BLOCK_SIZE):
    """FlexAttention ``BlockMask`` allowing what :func:`~flanforge.model.attention.masks.segment_mask`
    allows for real tokens.

    Padding queries (segment 0) attend to padding keys, or to nothing (FlexAttention
    then returns 0 for them, never NaN); their outputs are never used in the loss.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    def same_segment(b, h, q, kv):
        allowed = q_segments[b, q] == k_segments[b, kv]
        return allowed & (q >= kv) if causal else allowed

    (batch, tq), tk = q_segments.shape, k_segments.shape[1]
    return create_block_mask(
        same_segment, batch, None, tq, tk, device=q_segments.device, BLOCK_SIZE=block_size,
        _compile=q_segments.device.type == "cuda",
    )


@functools.cache
def _kernel(device_type: str) -> Callable:
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    # Compiled, FlexAttention is a fused block-sparse kernel; eager, it is a reference
    # that materialises the scores (CPU forward, for tests and evaluation).
    return torch.compile(flex_attention, dynamic=False) if device_type == "cuda" else flex_attention


class Flex(Attention):
    name = "flex"
    hf_name = "flanforge_flex"
    # transformers' own FlexAttention mask function, so the model's own forward (evaluation,
    # generation with 2D padding masks) builds a correct BlockMask; training passes a prepared one.
    hf_mask = "flex_attention"
    training_priority = 30

    def unavailable_reason(self, device_type: str, *, training: bool, dropout: float, arch: str) -> str | None:
        import torch

        if not flex_available():
            return f"torch {torch.__version__} has no torch.nn.attention.flex_attention (torch >= 2.5 has)"
        if device_type not in ("cuda", "cpu"):
            return f"FlexAttention does not run on {device_type} here"
        if training and device_type == "cpu":
            return f"torch {torch.__version__} has no FlexAttention backward on CPU (forward only)"
        if training and dropout > 0:
            return f"FlexAttention has no attention dropout and the model's is {dropout}"
        return None

    def mask(self, q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool, dtype: torch.dtype):
        return segment_block_mask(q_segments, k_segments, causal=causal)

    def forward(self, module, query, key, value, attention_mask, *, scaling=None, dropout=0.0, position_bias=None,
                **_kwargs):
        """transformers attention function: FlexAttention with a ``BlockMask`` (or no mask).

        query (B, Hq, Tq, D), key and value (B, Hkv, Tk, D); returns ((B, Tq, Hq, D), None).
        ``position_bias`` (T5's relative bias, (1, H, Tq, Tk), shared by the batch) is
        added to the scores.
        """
        if dropout > 0:
            raise AttentionUnavailable(f"model.attention=flex has no attention dropout (got {dropout}); use sdpa_mask")
        score_mod = None
        if position_bias is not None:
            def score_mod(score, b, h, q, kv):
                return score + position_bias[0, h, q, kv]

        heads, kv_heads = query.shape[1], key.shape[1]
        # Grouped-query attention natively when the head count is a power of two (as the
        # compiled kernel wants), else by repeating the key/value heads.
        gqa = heads != kv_heads and heads & (heads - 1) == 0
        if heads != kv_heads and not gqa:
            key, value = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (key, value))
        out = _kernel(query.device.type)(
            query, key, value, score_mod=score_mod, block_mask=attention_mask, scale=scaling, enable_gqa=gqa
        )
        return out.transpose(1, 2).contiguous(), None  # (B, Tq, Hq, D)


register(Flex())
