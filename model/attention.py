"""Block-diagonal attention masks that keep packed examples apart.

Position ids that restart per example do not by themselves stop attention
across examples in transformers' sdpa/eager paths; a 4D float mask
``(B, 1, Tq, Tk)`` does (0 where allowed, the dtype's minimum elsewhere). A bool
4D mask is misread by the eager path, so the float form is used everywhere.
"""

from __future__ import annotations

import torch


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


def shared_prefix_mask(segments: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Causal float mask for a prompt followed by several continuations in one row.

    ``segments`` (B, T): 1 on the shared prompt, 2..k on the continuations, 0 on
    padding. Every token sees the past of its own segment and the whole prompt
    before it, never another continuation: each continuation is computed as if
    it alone followed the prompt (with position ids that restart after the prompt).
    """
    keys = segments[:, None, :]  # (B, 1, T)
    allowed = ((segments[:, :, None] == keys) | (keys == 1)) & (keys > 0)
    allowed &= torch.ones(segments.shape[1], segments.shape[1], dtype=torch.bool, device=segments.device).tril()
    allowed[..., 0] |= ~allowed.any(dim=-1)  # padding queries keep one key: no NaNs
    return _to_float(allowed, dtype)
