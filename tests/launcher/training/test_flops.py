"""MFU's FLOP counts against hand counts (a tiny decoder and a tiny T5, packed rows), and the device
peaks by exact model."""

from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from flanforge.constants import IGNORE_INDEX
from flanforge.launcher.training.flops import FlopModel, StepLengths, model_flops_utilization, peak_flops

X = IGNORE_INDEX


def tiny_decoder():
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=50, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def test_decoder_parameters_by_hand():
    # per layer: q, k, v, o 4 * 16 * 16 = 1024; gate, up, down 3 * 16 * 32 = 1536; two norms 32 -> 2592
    flops = FlopModel.of(tiny_decoder())
    assert (flops.encoder_params, flops.decoder_params, flops.head_params) == (0, 2 * 2592 + 16, 50 * 16)


def test_decoder_step_flops_by_hand():
    """One row packing examples of 3 and 2 tokens (then padding), 3 target tokens."""
    batch = SimpleNamespace(tensors={"segment_ids": torch.tensor([[1, 1, 1, 2, 2, 0]]),
                                     "labels": torch.tensor([[X, 5, 6, X, 7, X]])})
    lengths = StepLengths.of([batch], X)
    assert lengths == StepLengths(0, 5, 3, 0, 3 * 4 // 2 + 2 * 3 // 2, 0)
    # 3 x (2 P_body tokens + 2 P_head targets + 4 d layers pairs)
    expected = 3 * (2 * 5200 * 5 + 2 * 800 * 3 + 4 * 16 * 2 * 9)
    assert FlopModel.of(tiny_decoder()).step_flops(lengths) == expected


def test_t5_counts_encoder_and_decoder_tokens_through_their_own_stacks():
    model = T5ForConditionalGeneration(T5Config(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
                                                num_decoder_layers=1, vocab_size=50, tie_word_embeddings=False))
    flops = FlopModel.of(model)
    # encoder layer: q, k, v, o 4 * 16 * 16; relative bias 32 buckets * 2 heads; 2 norms; wi, wo 2 * 16 * 32;
    # then its final norm. The decoder layer adds cross-attention (1024) and a third norm.
    assert flops.encoder_params == 1024 + 64 + 32 + 1024 + 16 == 2160
    assert flops.decoder_params == 1024 + 64 + 1024 + 48 + 1024 + 16 == 3200
    assert flops.head_params == 50 * 16
    batch = SimpleNamespace(tensors={"segment_ids": torch.tensor([[1, 1, 1, 2, 2]]),
                                     "decoder_segment_ids": torch.tensor([[1, 1, 2, 0]]),
                                     "labels": torch.tensor([[4, 5, 6, X]])})
    lengths = StepLengths.of([batch], X)
    assert lengths == StepLengths(5, 3, 3, 3 * 3 + 2 * 2, 2 * 3 // 2 + 1, 3 * 2 + 2 * 1)
    expected = 3 * (2 * flops.encoder_params * 5 + 2 * flops.decoder_params * 3 + 2 * 800 * 3
                    + 4 * 16 * (1 * 13 + 1 * (4 + 8)))
    assert flops.step_flops(lengths) == expected


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12),  # SXM5
    ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA H100 NVL", "fp16", 835e12),
    ("NVIDIA H100 80GB HBM3", "fp32", 494e12),  # TF32
    ("NVIDIA H200", "bf16", 989e12),
    ("NVIDIA A100-SXM4-40GB", "bf16", 312e12),
    ("NVIDIA L4", "bf16", 121e12),
    ("NVIDIA L40S", "bf16", 362e12),
    ("NVIDIA A10G", "bf16", 70e12),
    ("NVIDIA A10", "bf16", 125e12),
])
def test_peaks_by_exact_model(name, precision, peak):
    assert peak_flops(name, precision) == peak


def test_no_mfu_without_a_known_peak():
    assert model_flops_utilization(1e12, 1.0, "cpu", "fp32") is None
    assert model_flops_utilization(1e12, 1.0, "Some Future GPU", "bf16") is None
    assert model_flops_utilization(989e12 / 2, 1.0, "NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(0.5)
