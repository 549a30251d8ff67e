"""Fused linear cross-entropy: the LM head matmul and the loss without the full logits.

Functional and module API over ``function.FusedLinearCrossEntropyFunction``.
"""

from __future__ import annotations

import torch
from torch import nn

from .function import LOGITS_CHUNK_BYTES, fused_linear_cross_entropy_apply
from .options import CrossEntropyOptions

__all__ = ["LOGITS_CHUNK_BYTES", "CrossEntropyOptions", "FusedLinearCrossEntropy", "fused_linear_cross_entropy"]


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T + bias`` against ``labels``, chunk by chunk.

    Equals ``F.cross_entropy(softcap(hidden @ weight.T + bias), labels,
    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)``
    plus ``z_loss * logsumexp(logits)**2`` per non-ignored token (reduced like the
    cross-entropy), where ``softcap(x) = softcap * tanh(x / softcap)``; except that
    "mean" over a batch whose labels are all ignored is 0 with zero gradients, not NaN.

    hidden (N, H) or (B, T, H); weight (V, H); labels (N,) or (B, T), integers in
    [0, V) or ignore_index; bias (V,) or None. Returns a scalar, or per-token losses
    in labels' shape for reduction="none". The loss is fp32 for fp32/bf16/fp16
    inputs (fp64 for fp64); gradients come back in the input dtype, accumulated in
    fp32. See ``CrossEntropyOptions`` for the options; ``impl`` forces a path.
    Raises ValueError on mismatched shapes, dtypes or devices and on labels out of range.
    """
    options = CrossEntropyOptions(
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        reduction=reduction,
        chunk_size=chunk_size,
        impl=impl,
    )
    return fused_linear_cross_entropy_apply(hidden, weight, labels, bias, options)


class FusedLinearCrossEntropy(nn.Module):
    """Module form of ``fused_linear_cross_entropy``; the options are fixed (and checked) at construction.

    The weight is an argument of forward, not a parameter, so a tied or sharded LM
    head stays owned by the model.
    """

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        reduction: str = "mean",
        chunk_size: int | None = None,
        impl: str = "auto",
    ):
        super().__init__()
        self.options = CrossEntropyOptions(
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            reduction=reduction,
            chunk_size=chunk_size,
            impl=impl,
        )

    def forward(
        self, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return fused_linear_cross_entropy_apply(hidden, weight, labels, bias, self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in vars(self.options).items())
