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
from transformers.initialization import no_init_weights

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
                training: bool = True, meta: bool = False, zero3: dict[str, Any] | None = None) -> torch.nn.Module:
    """Return the HF model in fp32 on the CPU (DeepSpeed moves and casts it), its attention
    layers set to ``model.attention`` for ``device_type`` (default: :func:`training_device_type`).
    ``meta``: the architecture alone, on the meta device (no weights read, no memory).
    ``zero3``: the DeepSpeed config of a ZeRO-3 run; the weights are then partitioned over the
    ranks as they are built or read (``deepspeed.zero.Init`` through transformers' integration),
    never whole on any rank. A from-scratch model has the same weights either way.

    An attention implementation that cannot run there is a UserError naming the ones that can.
    """
    check_model_path(cfg)
    if cfg.path is not None:
        path = Path(cfg.path)
        auto = AutoModelForCausalLM if cfg.arch == "decoder" else AutoModelForSeq2SeqLM
        if meta:
            model = _meta_architecture(auto, path)
        else:
            with _zero3_construction(zero3):
                model = auto.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        rows = model.get_input_embeddings().num_embeddings
        if rows < tokenizer.vocab_size:
            raise UserError(f"model.path: {path} embeds {rows} tokens but its tokenizer "
                            f"({tokenizer.path}) has {tokenizer.vocab_size}: they do not belong together")
    else:
        torch.manual_seed(seed)
        ids = dict(pad_token_id=tokenizer.pad_id, eos_token_id=tokenizer.eos_id, vocab_size=tokenizer.vocab_size)
        if cfg.arch == "decoder":
            cls, config = LlamaForCausalLM, hf_config_of(cfg, **ids, bos_token_id=tokenizer.bos_id)
        else:
            cls, config = T5ForConditionalGeneration, hf_config_of(cfg, **ids, decoder_start_token_id=tokenizer.pad_id)
        if meta:
            with torch.device("meta"):
                model = cls(config)
        else:
            model = _from_scratch(cls, config, zero3)
    attention.use(model, choose_attention(cfg, model.config, device_type=device_type, training=training))
    if cfg.gradient_checkpointing:
        enable_recompute(model)
    return model


def enable_recompute(model: torch.nn.Module) -> None:
    """Full activation recompute, non-reentrant: transformers' ``activation_checkpointing_enable`` (its
    name from 5.25 on; older versions, which setup.py allows, have only ``gradient_checkpointing_enable``)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _from_scratch(cls, config, zero3: dict[str, Any] | None) -> torch.nn.Module:
    """A randomly initialised ``cls(config)``, drawn from torch's generator in the same order with
    or without ZeRO-3: built without torch's default initialisers (``no_init_weights``), then
    initialised by transformers' ``_init_weights`` alone, on rank 0 under ZeRO-3 (broadcast)."""
    if zero3 is not None:
        with _zero3_construction(zero3):
            model = cls._from_config(config)  # zero.Init, then initialize_weights_zero3
    else:
        with no_init_weights():
            model = cls(config)
        model.init_weights()
    if isinstance(model, T5ForConditionalGeneration):
        init_t5_head(model)
    return model


@contextlib.contextmanager
def _zero3_construction(zero3: dict[str, Any] | None):
    """transformers builds and reads models partitioned (``deepspeed.zero.Init``) while a
    ``HfDeepSpeedConfig`` of a ZeRO-3 config is alive: this one lives for the block only."""
    if zero3 is None:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig, unset_hf_deepspeed_config

    keep = HfDeepSpeedConfig(zero3)  # noqa: F841 (transformers holds a weak reference)
    try:
        yield
    finally:
        unset_hf_deepspeed_config()


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
    weight = model.lm_head.weight
    with _gathered(weight), torch.no_grad():
        weight.normal_(0.0, model.config.d_model**-0.5)


def _gathered(param: torch.nn.Parameter):
    """A ZeRO-3 partitioned parameter whole for the block, rank 0's changes broadcast at its end."""
    if not hasattr(param, "ds_id"):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([param], modifier_rank=0)


def numel(param: torch.nn.Parameter) -> int:
    """A parameter's elements, also when ZeRO-3 has partitioned it (its local tensor is then empty)."""
    return getattr(param, "ds_numel", param.numel())


def full_shape(param: torch.nn.Parameter) -> torch.Size:
    """A parameter's shape, also when ZeRO-3 has partitioned it."""
    return getattr(param, "ds_shape", param.shape)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(numel(p) for p in model.parameters())
