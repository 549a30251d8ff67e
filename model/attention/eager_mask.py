"""eager_mask: the dense segment mask through transformers' ``eager`` path (matmul + softmax).
Runs anywhere; ``auto`` never picks it."""

from flanforge.model.attention.base import register
from flanforge.model.attention.masks import DenseMask


class EagerMask(DenseMask):
    name = "eager_mask"
    hf_name = "eager"


register(EagerMask())
