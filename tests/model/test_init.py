"""From-scratch models start near a uniform prediction; a pretrained checkpoint is loaded untouched."""

import math
from pathlib import Path

import pytest
import torch
from transformers import T5ForConditionalGeneration

from flanforge.launcher.config import ModelConfig, load_config
from flanforge.model.load import build_model
from flanforge.model.training_forward import TrainingModel
from flanforge.model.tokenizer import train_tokenizer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEXTS = [f"Sort the numbers {i} {i * 7 % 13} {i * 3}. Answer: the river stone cloud tiger {i}" for i in range(400)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(TEXTS, tmp_path_factory.mktemp("spm"), vocab_size=500)


def first_loss(hf_model, arch: str, vocab: int) -> float:
    """Mean loss of random targets on one packed batch (two rows, three examples each)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 96), generator=gen)
    seg = torch.arange(96).div(32, rounding_mode="floor").add(1).expand(2, -1)
    batch = {"input_ids": ids, "segment_ids": seg, "position_ids": torch.arange(96).remainder(32).expand(2, -1),
             "labels": torch.randint(3, vocab, (2, 96), generator=gen)}
    if arch == "t5":
        batch.update(decoder_input_ids=torch.randint(3, vocab, (2, 96), generator=gen), decoder_segment_ids=seg)
    with torch.no_grad():
        _, losses = TrainingModel(hf_model.eval(), arch=arch, fused=True, zero_stage=0)(batch)
    return losses.mean().item()


@pytest.mark.parametrize(("config", "arch", "overrides"), [
    ("demo.yaml", "decoder", []),
    ("demo_t5.yaml", "t5", []),
    # Original T5's layout: a tied head after a d_model^-0.5 scaling.
    ("demo_t5.yaml", "t5", ["model.hf_config.tie_word_embeddings=true"]),
], ids=["decoder", "t5", "t5_tied_scaled"])
def test_first_loss_is_near_ln_vocab(tokenizer, config, arch, overrides):
    cfg = load_config(CONFIGS / config, overrides).model
    assert cfg.arch == arch
    model = build_model(cfg, tokenizer, seed=0)
    assert abs(first_loss(model, arch, tokenizer.vocab_size) - math.log(tokenizer.vocab_size)) < 1.0


def test_transformers_own_t5_init_starts_far_off(tokenizer):
    """Guards the test above: with transformers' own init of an unscaled head, T5 starts tens of nats too high."""
    model = build_model(load_config(CONFIGS / "demo_t5.yaml", []).model, tokenizer, seed=0)
    plain = T5ForConditionalGeneration(model.config)
    attention_impl = model.config._attn_implementation
    plain.set_attn_implementation(attention_impl)
    assert first_loss(plain, "t5", tokenizer.vocab_size) > math.log(tokenizer.vocab_size) + 10


def test_a_pretrained_t5_is_loaded_untouched(tmp_path, tokenizer):
    saved = build_model(ModelConfig(arch="t5", hf_config={"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 1,
                                                          "num_heads": 4}), tokenizer, seed=0)
    with torch.no_grad():
        saved.lm_head.weight.mul_(7.0)  # a head no from-scratch init would draw
    saved.save_pretrained(tmp_path)
    loaded = build_model(ModelConfig(arch="t5", path=str(tmp_path)), tokenizer, seed=1)
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_recompute_is_enabled_without_deprecation_warnings(tokenizer):
    import warnings

    cfg = load_config(CONFIGS / "demo.yaml", ["model.gradient_checkpointing=true"]).model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(cfg, tokenizer, seed=0)
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert not [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))], \
        [str(w.message) for w in caught]
