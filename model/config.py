"""The ``model:`` section of a run config: which network to train (owned here, read by ``model/load.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from flanforge.config_fields import may_change
from flanforge.errors import ConfigError, did_you_mean
from flanforge.model.attention import choices as attention_choices


@dataclass
class ModelConfig:
    """Which network to train."""

    arch: Literal["decoder", "t5"] = "decoder"
    """``decoder``: an ``AutoModelForCausalLM`` (Llama-style); ``t5``: ``AutoModelForSeq2SeqLM``."""
    path: Optional[str] = None
    """A local Hugging Face model directory. ``None``: random init from ``hf_config``."""
    hf_config: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the HF config class when initialising from scratch."""
    tokenizer_path: Optional[str] = None
    """A local tokenizer: a SentencePiece model, a Hugging Face ``tokenizer.json``, or a directory
    holding ``spiece.model``, ``tokenizer.model`` or ``tokenizer.json``. ``None``: the tokenizer
    in ``model.path``, or (no ``model.path``) one trained on the mixture."""
    vocab_size: int = 2000
    """Vocabulary size of the SentencePiece tokenizer trained on first use."""
    fused_loss: Union[bool, Literal["auto"]] = "auto"
    """Compute the loss with the fused linear cross-entropy kernel (never builds full logits);
    ``auto``: on GPUs always, on CPUs for micro-batches whose target-token logits reach 2**20
    entries (below that plain logits are faster)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    attention: str = may_change("auto")
    """How packed rows are kept apart in attention: ``sdpa_mask``/``eager_mask`` (a dense 4D
    mask, transformers' sdpa or eager kernel), ``flex`` (FlexAttention with a block-sparse
    mask from the segment ids; CUDA for training), ``segments`` (no mask: attention on each
    example alone; decoders), or any other registered implementation; ``auto`` (for training
    the one of highest priority that can run: ``flex`` on CUDA when the model allows it, else
    ``segments`` for a decoder, else ``sdpa_mask``). See ``model/attention/``."""

    def __post_init__(self) -> None:
        if self.vocab_size < 64:
            raise ConfigError(f"model.vocab_size={self.vocab_size} is too small (at least 64)")
        choices = attention_choices()
        if self.attention not in choices:
            hint = did_you_mean(str(self.attention), choices, cutoff=0.6)
            raise ConfigError(f"model.attention: {self.attention!r} is not one of {list(choices)}{hint}")
