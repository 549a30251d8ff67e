"""Build the network: a local Hugging Face model directory, or a random init from a config.

Nothing is fetched from a hub: ``from_pretrained`` runs with
``local_files_only=True`` on a directory that must exist.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from flanforge.errors import UserError
from flanforge.model.config import ModelConfig
from flanforge.model import attention
from flanforge.model.paths import check_model_path, check_paths, load_configured_tokenizer, tokenizer_source  # noqa: F401
from flanforge.model.tokenizer import Tokenizer

# A tiny Llama-style decoder (~3.5M parameters at vocab 2000): the demo's default.
TINY_DECODER: dict[str, Any] = dict(
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)
# A tiny T5 in FLAN-T5's layout: gated-gelu, no d_model^-0.5 scaling before the LM head
# (an untied head before transformers 5; from 5 on T5's head is always tied to the embedding).
TINY_T5: dict[str, Any] = dict(
    d_model=256,
    d_ff=512,
    d_kv=64,
    num_layers=3,
    num_decoder_layers=3,
    num_heads=4,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
)


def training_device_type() -> str:
    """The device type ranks train on: CUDA when torch sees a GPU (DeepSpeed picks it then), else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def hf_config_of(cfg: ModelConfig, **scratch: Any):
    """The transformers config of the model ``cfg`` describes, without building it: ``model.path``'s
    config.json, or the from-scratch config (the tiny defaults under ``model.hf_config``, then ``scratch``)."""
    if cfg.path is not None:
        return AutoConfig.from_pretrained(cfg.path, local_files_only=True)
    if cfg.arch == "decoder":
        return LlamaConfig(**{**TINY_DECODER, **cfg.hf_config, **scratch})
    return T5Config(**{**TINY_T5, **cfg.hf_config, **scratch})


def choose_attention(cfg: ModelConfig, hf_config=None, *, device_type: str | None = None,
                     training: bool = True) -> str:
    """The attention implementation ``model.attention`` means for this model on ``device_type``
    (default: :func:`training_device_type`); a UserError naming the available ones if it cannot run.

    ``hf_config``: the model's transformers config; None reads it without building the model
    (``model.path``'s config.json, or the from-scratch config), so ``flanforge train`` can
    check before any rank starts.
    """
    if hf_config is None:
        hf_config = hf_config_of(cfg)
    try:
        return attention.resolve(cfg.attention, device_type or training_device_type(), training=training,
                                 dropout=attention.attention_dropout(hf_config), arch=cfg.arch)
    except attention.AttentionUnavailable as err:
        raise UserError(str(err)) from None


def build_model(cfg: ModelConfig, tokenizer: Tokenizer, seed: int, *, device_type: str | None = None,
                training: bool = True, meta: bool = False) -> torch.nn.Module:
    """Return the HF model in fp32 on the CPU (DeepSpeed moves and casts it), its attention
    layers set to ``model.attention`` for ``device_type`` (default: :func:`training_device_type`).
    ``meta``: the architecture alone, on the meta device (no weights read, no memory).

    An attention implementation that cannot run there is a UserError naming the ones that can.
    """
    check_model_path(cfg)
    if cfg.path is not None:
        path = Path(cfg.path)
        auto = AutoModelForCausalLM if cfg.arch == "decoder" else AutoModelForSeq2SeqLM
        if meta:
            model = _meta_architecture(auto, path)
        else:
            model = auto.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        rows = model.get_input_embeddings().num_embeddings
        if rows < tokenizer.vocab_size:
            raise UserError(f"model.path: {path} embeds {rows} tokens but its tokenizer "
                            f"({tokenizer.path}) has {tokenizer.vocab_size}: they do not belong together")
    else:
        torch.manual_seed(seed)
        ids = dict(pad_token_id=tokenizer.pad_id, eos_token_id=tokenizer.eos_id, vocab_size=tokenizer.vocab_size)
        with torch.device("meta") if meta else contextlib.nullcontext():
            if cfg.arch == "decoder":
                model = LlamaForCausalLM(hf_config_of(cfg, **ids, bos_token_id=tokenizer.bos_id))
            else:
                model = T5ForConditionalGeneration(hf_config_of(cfg, **ids, decoder_start_token_id=tokenizer.pad_id))
                init_t5_head(model)
    attention.use(model, choose_attention(cfg, model.config, device_type=device_type, training=training))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _meta_architecture(auto, path: Path) -> torch.nn.Module:
    """The model in ``path`` without its weights (on the meta device), with its generation config."""
    with torch.device("meta"):
        model = auto.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path, local_files_only=True)
    return model


def t5_scales_decoder_output(config) -> bool:
    """Whether T5 multiplies the decoder output by d_model^-0.5 before the LM head
    (transformers >= 5 names it ``scale_decoder_outputs``; older ones scale a tied head)."""
    return bool(getattr(config, "scale_decoder_outputs", getattr(config, "tie_word_embeddings", False)))


def init_t5_head(model: T5ForConditionalGeneration) -> None:
    """Give a from-scratch T5 small first logits, so its first loss is near ln(vocab).

    transformers draws the embedding and the LM head with std 1: without the d_model^-0.5
    output scaling the first logits have std ~sqrt(d_model) (a first loss of ~100); with
    it, a tied head still favours the input token, which the residual stream carries.
    So the head gets the fan-in std d_model^-0.5 (T5X's init of T5 1.1's separate head);
    when transformers ties it to the embedding (always, from transformers 5 on), the
    embedding gets it too. Pretrained weights never come here.
    """
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, model.config.d_model**-0.5)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
