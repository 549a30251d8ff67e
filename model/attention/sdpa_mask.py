"""sdpa_mask: the dense segment mask through transformers' ``sdpa`` path (PyTorch SDPA). Runs anywhere;
``auto``'s last resort for training and its choice for evaluation (padded batches, a KV cache)."""

from flanforge.model.attention.base import register
from flanforge.model.attention.masks import DenseMask


class SdpaMask(DenseMask):
    name = "sdpa_mask"
    hf_name = "sdpa"
    training_priority = 10
    evaluation_priority = 10


register(SdpaMask())
