"""Fused linear cross-entropy: the LM head matmul and the loss without the full logits.

Functional and module API over ``function.FusedLinearCrossEntropyFunction``.
"""

from __future__ import annotations

import torch
from torch import nn

from .function import LOGITS_CHUNK_BYTES, fused_linear_cross_entropy_apply
from .options import IGNORE_INDEX, CrossEntropyOptions

__all__ = ["IGNORE_INDEX", "LOGITS_CHUNK_BYTES", "CrossEntropyOptions", "FusedLinearCrossEntropy", "fused_linear_cross_entropy"]


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    impl: str = "auto",
    token_weights: torch.Tensor | None = None,
    return_token_losses: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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

    ``token_weights`` (labels' shape, floating point, not differentiated) scales
    each token's loss before the reduction: "sum" gives ``sum(w * loss)``, "mean"
    ``sum(w * loss) / n_valid``, "none" ``w * loss``. A weighted "sum" is how a
    caller that knows each token's share of a larger batch gets its gradients in
    the forward pass (with "none" they take one more logits matmul in backward).
    ``return_token_losses=True`` returns ``(loss, token_losses)``, the second the
    unweighted per-token losses in labels' shape (0 where ignored), detached.
    Raises ValueError on mismatched shapes, dtypes or devices and on labels out of range; the range
    check costs a device-to-host copy, which ``check_labels=False`` skips for "sum" and "none" (a caller
    whose labels are valid by construction: flanforge's training forward, once per step on a GPU).
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
    loss, token_losses = fused_linear_cross_entropy_apply(hidden, weight, labels, bias, options, token_weights,
                                                          check_labels)
    return (loss, token_losses) if return_token_losses else loss


class FusedLinearCrossEntropy(nn.Module):
    """Module form of ``fused_linear_cross_entropy``; the options are fixed (and checked) at construction.

    The weight is an argument of forward, not a parameter, so a tied or sharded LM
    head stays owned by the model.
    """

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE_INDEX,
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
        return fused_linear_cross_entropy_apply(hidden, weight, labels, bias, self.options)[0]

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in vars(self.options).items())
