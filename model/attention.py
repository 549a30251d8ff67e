"""Attention over packed rows: which kernel runs, and the mask it is given.

A packed row holds several examples; position ids that restart per example do
not by themselves stop attention across examples. Each implementation below
keeps a query inside its own segment (and, when causal, its own past):

    sdpa_mask   a dense 4D float mask ``(B, 1, Tq, Tk)`` (0 where allowed, the dtype's
                minimum elsewhere) through transformers' ``sdpa`` path. Runs anywhere.
    eager_mask  the same mask through transformers' ``eager`` path (matmul + softmax).
    flex        FlexAttention (``torch.nn.attention.flex_attention``) with a ``BlockMask``
                built from the segment ids, as torchtitan masks documents: blocks with
                no allowed (query, key) pair are skipped and no (Tq, Tk) mask is kept.
                Compiled on CUDA. torch has no FlexAttention backward on CPU, so there it
                runs forward only (evaluation, tests). No attention dropout.
    segments    no mask at all: causal ``scaled_dot_product_attention`` on each example of
                a row alone (a varlen kernel's layout, one call per example), from the
                examples' token ranges computed on the host. No score across a boundary
                is computed: on rows of two or three examples, 2-3x less attention work
                than the dense mask. Decoder-only (T5's relative position bias and
                cross-attention take a mask); without ranges it is transformers' sdpa.

``auto`` picks by device, here and nowhere else (:func:`resolve`): for training,
``flex`` on CUDA when the model allows it, ``segments`` for a decoder, else
``sdpa_mask``; for evaluation ``sdpa_mask``. A bool 4D mask is misread by
transformers' eager path, so the dense form is always float.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

FLEX_HF_NAME = "flanforge_flex"
SEGMENTS_HF_NAME = "flanforge_segments"
# model.attention -> the name transformers knows the attention function by.
HF_NAMES = {"sdpa_mask": "sdpa", "eager_mask": "eager", "flex": FLEX_HF_NAME, "segments": SEGMENTS_HF_NAME}
IMPLEMENTATIONS = ("auto", *HF_NAMES)
FLEX_BLOCK_SIZE = 128


class AttentionUnavailable(ValueError):
    """The requested implementation cannot run here; the message names the ones that can."""


# --------------------------------------------------------------------------- choice


def flex_available() -> bool:
    try:
        import torch.nn.attention.flex_attention  # noqa: F401  (torch >= 2.5)
    except ImportError:
        return False
    return True


Segments = list[list[tuple[int, int]]]
"""Per row, the ``(start, stop)`` token range of each example, in order."""


def unavailable_reason(name: str, device_type: str, *, training: bool, dropout: float,
                       arch: str = "decoder") -> str | None:
    """Why implementation ``name`` cannot run on ``device_type`` for this model, or None if it can."""
    if name == "segments" and arch != "decoder":
        return "per-segment attention runs decoder-only models (T5's bias and cross-attention take a mask)"
    if name != "flex":
        return None
    if not flex_available():
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention (torch >= 2.5 has)"
    if device_type not in ("cuda", "cpu"):
        return f"FlexAttention does not run on {device_type} here"
    if training and device_type == "cpu":
        return f"torch {torch.__version__} has no FlexAttention backward on CPU (forward only)"
    if training and dropout > 0:
        return f"FlexAttention has no attention dropout and the model's is {dropout}"
    return None


def resolve(requested: str, device_type: str, *, training: bool = True, dropout: float = 0.0,
            arch: str = "decoder") -> str:
    """The implementation to use: ``requested``, or for ``auto`` the best one for the device.

    Raises :class:`AttentionUnavailable` (one line, naming what is available) when
    the requested implementation cannot run on ``device_type``.
    """
    if requested not in IMPLEMENTATIONS:
        raise AttentionUnavailable(f"model.attention={requested!r} is unknown; choose one of {', '.join(IMPLEMENTATIONS)}")
    reasons = {name: unavailable_reason(name, device_type, training=training, dropout=dropout, arch=arch)
               for name in HF_NAMES}
    if requested == "auto":
        # Skipping cross-example work pays on packed training rows; evaluation and generation run
        # the model's own forward on padded batches (and a growing KV cache), where the dense path fits.
        preferred = ("flex", "segments", "sdpa_mask") if device_type == "cuda" else ("segments", "sdpa_mask")
        preferred = preferred if training else ("sdpa_mask",)
        return next(name for name in preferred if reasons[name] is None)
    if reasons[requested] is not None:
        available = ", ".join(["auto"] + [name for name, reason in reasons.items() if reason is None])
        raise AttentionUnavailable(
            f"model.attention={requested} is not available on {device_type}: {reasons[requested]}; available: {available}"
        )
    return requested


def attention_dropout(config) -> float:
    """The attention-probability dropout of a transformers config (T5: ``dropout_rate``)."""
    if getattr(config, "model_type", "") == "t5":
        return float(config.dropout_rate)
    return float(getattr(config, "attention_dropout", 0.0) or 0.0)


def use(model: torch.nn.Module, name: str) -> None:
    """Make every attention layer of the transformers ``model`` (sub-models included) run ``name``."""
    if name == "flex":
        register_flex()
    if name == "segments":
        register_segments()
    model.set_attn_implementation(HF_NAMES[name])


def implementation_of(model: torch.nn.Module) -> str:
    """The ``model.attention`` name the transformers ``model`` runs now (see :func:`use`)."""
    hf_name = model.config._attn_implementation
    for name, known in HF_NAMES.items():
        if known == hf_name:
            return name
    raise AttentionUnavailable(f"attention implementation {hf_name!r} is not one flanforge builds masks for")


# --------------------------------------------------------------------------- masks


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
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)  # (B, 1, Tq, Tk)


def tree_mask(parents: torch.Tensor, depths: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Float mask for rows of token trees (evaluation, ``model/prefix_trie.py``): a position sees
    itself and its ancestors only, whatever the order of the positions in the row.

    ``parents`` (B, T): the position of each token's parent in its row, -1 for a root and for
    padding (which then sees itself only: no NaNs); ``depths`` (B, T): each token's depth (0 for
    a root, its parent's plus one otherwise: the position ids). A path from a root is thus
    computed as if it were a sequence alone. Built on the host, one depth at a time (a token
    sees what its parent sees, and itself).
    """
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
    allowed_t = torch.from_numpy(allowed).to(parents.device)
    mask = torch.zeros(allowed_t.shape, dtype=dtype, device=parents.device)
    return mask.masked_fill_(~allowed_t, torch.finfo(dtype).min).unsqueeze(1)  # (B, 1, T, T)


def segment_block_mask(
    q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool, block_size: int = FLEX_BLOCK_SIZE
):
    """FlexAttention ``BlockMask`` allowing what :func:`segment_mask` allows for real tokens.

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


def packed_mask(name: str, q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool, dtype: torch.dtype):
    """The ``attention_mask`` implementation ``name`` takes for these segments (a 4D tensor, a
    BlockMask, or None for ``segments``, which takes the examples' ranges instead)."""
    if name == "segments":
        return None
    if name == "flex":
        return segment_block_mask(q_segments, k_segments, causal=causal)
    return segment_mask(q_segments, k_segments, causal=causal, dtype=dtype)


# --------------------------------------------------------------------------- flex kernel


@functools.cache
def _flex_kernel(device_type: str) -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    # Compiled, FlexAttention is a fused block-sparse kernel; eager, it is a reference
    # that materialises the scores (CPU forward, for tests and evaluation).
    return torch.compile(flex_attention, dynamic=False) if device_type == "cuda" else flex_attention


def flex_attention_forward(module, query, key, value, attention_mask, *, scaling=None, dropout=0.0,
                           position_bias=None, **_kwargs):
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
    out = _flex_kernel(query.device.type)(
        query, key, value, score_mod=score_mod, block_mask=attention_mask, scale=scaling, enable_gqa=gqa
    )
    return out.transpose(1, 2).contiguous(), None  # (B, Tq, Hq, D)


@functools.cache
def register_flex() -> None:
    """Register :func:`flex_attention_forward` with transformers, once. Its mask function is
    transformers' own FlexAttention one, so the model's own forward (evaluation, generation
    with 2D padding masks) builds a correct BlockMask; training passes a prepared one."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(FLEX_HF_NAME, flex_attention_forward)
    AttentionMaskInterface.register(FLEX_HF_NAME, ALL_MASK_ATTENTION_FUNCTIONS["flex_attention"])


# --------------------------------------------------------------------------- per-segment kernel


def segment_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                              segments: Segments | None = None, **kwargs):
    """transformers attention function: causal attention within each example of a row.

    query (B, Hq, T, D), key and value (B, Hkv, T, D); returns ((B, T, Hq, D), None).
    Padding positions get zeros (their outputs never reach the loss). Without
    ``segments`` (the model's own forward) it is transformers' sdpa attention.
    """
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None:
        raise AttentionUnavailable("model.attention=segments supports neither softcapped nor sliding-window attention")
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    _, heads, length, dim = query.shape
    rows = []
    for b, ranges in enumerate(segments):
        parts, at = [], 0
        for start, stop in [*ranges, (length, length)]:
            if start > at:  # padding
                parts.append(query.new_zeros(1, heads, start - at, dim))
            if stop > start:
                parts.append(F.scaled_dot_product_attention(
                    query[b:b + 1, :, start:stop], key[b:b + 1, :, start:stop], value[b:b + 1, :, start:stop],
                    dropout_p=dropout, scale=scaling, is_causal=True))  # (1, H, stop - start, D)
            at = stop
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None  # (B, T, H, D)


@functools.cache
def register_segments() -> None:
    """Register :func:`segment_attention_forward` with transformers, once; masks (for the
    model's own forward) are built as for sdpa."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(SEGMENTS_HF_NAME, segment_attention_forward)
    AttentionMaskInterface.register(SEGMENTS_HF_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
