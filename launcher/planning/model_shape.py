"""What the memory plan needs to know about a model, read from its config without building its weights.

The network is built on the ``meta`` device (shapes only, no memory), so the parameter count is
exact, tied weights counted once, and the largest layer is the one DeepSpeed's ZeRO-3 estimator
means: the module with the most parameters of its own (``parameters(recurse=False)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from flanforge.errors import ConfigError
from flanforge.model.config import ModelConfig

_BUILD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OSError, ZeroDivisionError)


@dataclass(frozen=True)
class ModelShape:
    """A network's sizes: parameters, and the dimensions the activation formulas read."""

    arch: str
    params: int
    """Distinct parameters (tied weights once)."""
    largest_layer_params: int
    """Parameters of the module that holds the most of its own (ZeRO-3 gathers one at a time)."""
    hidden: int
    heads: int
    layers: int
    """Decoder layers (``decoder``), encoder layers (``t5``)."""
    decoder_layers: int
    """T5's decoder layers; 0 for a decoder-only model."""
    vocab: int


def _where(cfg: ModelConfig) -> str:
    return f"model.path={cfg.path}" if cfg.path is not None else f"model.hf_config={cfg.hf_config}"


def model_shape(cfg: ModelConfig, vocab: int | None = None) -> ModelShape:
    """The shape of the model ``cfg`` describes (from scratch: a vocabulary of ``vocab``, the tokenizer's
    when it is known, else of ``model.vocab_size``, the trained tokenizer's upper bound); a ConfigError
    naming the value when it cannot be built."""
    import torch
    from huggingface_hub.errors import StrictDataclassError  # transformers' config validation
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from flanforge.model.load import hf_config_of
    from flanforge.model.paths import check_model_path

    check_model_path(cfg)
    try:
        hf = hf_config_of(cfg) if cfg.path is not None else hf_config_of(cfg, vocab_size=vocab or cfg.vocab_size)
        auto = AutoModelForCausalLM if cfg.arch == "decoder" else AutoModelForSeq2SeqLM
        with torch.device("meta"):
            model = auto.from_config(hf)
    except (*_BUILD_ERRORS, StrictDataclassError) as err:
        cause = err.__cause__ if isinstance(err, StrictDataclassError) and err.__cause__ else err  # the validator's own words
        detail = (str(cause).splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"{_where(cfg)} cannot be built: {detail}") from None
    own = (sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    if cfg.arch == "decoder":
        dims = dict(hidden=hf.hidden_size, heads=hf.num_attention_heads, layers=hf.num_hidden_layers,
                    decoder_layers=0)
    else:
        dims = dict(hidden=hf.d_model, heads=hf.num_heads, layers=hf.num_layers, decoder_layers=hf.num_decoder_layers)
    return ModelShape(arch=cfg.arch, params=sum(p.numel() for p in model.parameters()),
                      largest_layer_params=max(own), vocab=hf.vocab_size, **dims)
