"""The ``model:`` section of a run config: which network to train (owned here, read by ``model/load.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from flanforge.errors import ConfigError


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
    fused_loss: bool = True
    """Compute the loss with the fused linear cross-entropy kernel (never builds full logits)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""

    def __post_init__(self) -> None:
        if self.vocab_size < 64:
            raise ConfigError(f"model.vocab_size={self.vocab_size} is too small (at least 64)")
