"""Options of the fused linear cross-entropy, checked once when they are built."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flanforge.constants import IGNORE_INDEX

REDUCTIONS = ("mean", "sum", "none")
IMPLS = ("auto", "torch", "triton")


@dataclass(frozen=True)
class CrossEntropyOptions:
    """Everything but the tensors: the loss definition and how it is computed."""

    ignore_index: int = IGNORE_INDEX
    """Labels equal to this contribute no loss and no gradient."""
    label_smoothing: float = 0.0
    """Mass in [0, 1] spread uniformly over the vocabulary, as in F.cross_entropy."""
    z_loss: float = 0.0
    """Weight of the PaLM z-loss, z_loss * logsumexp(logits)**2 per non-ignored token."""
    softcap: float | None = None
    """If set, logits become softcap * tanh(logits / softcap) before the softmax (Gemma 2)."""
    reduction: str = "mean"
    """"mean" over non-ignored tokens (0 if there are none), "sum", or "none" (per token)."""
    chunk_size: int | None = None
    """Tokens per chunk; None picks it so one chunk of fp32 logits fits LOGITS_CHUNK_BYTES."""
    impl: str = "auto"
    """"auto" (Triton for CUDA tensors when it imports, torch otherwise), "torch" or "triton"."""

    def __post_init__(self):
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got {self.ignore_index!r}")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing!r}")
        if not (math.isfinite(self.z_loss) and self.z_loss >= 0.0):
            raise ValueError(f"z_loss must be a finite number >= 0, got {self.z_loss!r}")
        if self.softcap is not None and not (math.isfinite(self.softcap) and self.softcap > 0.0):
            raise ValueError(f"softcap must be None or a finite number > 0, got {self.softcap!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.chunk_size is not None and (
            isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be None or an int >= 1, got {self.chunk_size!r}")
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {self.impl!r}")
