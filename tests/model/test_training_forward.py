"""The training forward's loss choice: plain logits and the fused kernel give the same loss and gradients."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from flanforge.model.training_forward import CPU_FUSED_MIN_LOGITS, TrainingModel, use_fused_loss


def test_auto_is_fused_on_gpus_and_per_batch_on_cpus():
    assert use_fused_loss("auto", "cuda") is True
    assert use_fused_loss("auto", "cpu") is None
    assert use_fused_loss(False, "cuda") is False and use_fused_loss(True, "cpu") is True
    assert CPU_FUSED_MIN_LOGITS == 2**20


def test_plain_and_fused_losses_agree_with_weights():
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=4))
    ids = torch.randint(3, 97, (2, 12))
    labels = torch.full((2, 12), -100)
    labels[:, 5:11] = ids[:, 6:12]
    batch = {"input_ids": ids, "labels": labels, "segment_ids": torch.ones_like(ids),
             "position_ids": torch.arange(12).expand(2, 12),
             "target_index": (labels.reshape(-1) != -100).nonzero().squeeze(1),
             "loss_weights": torch.linspace(0.5, 1.5, 12)}
    results = {}
    for fused in (True, False, None):  # None: auto on a CPU, plain at this size
        hf.zero_grad()
        loss, losses = TrainingModel(hf, arch="decoder", fused=fused, zero_stage=0)(batch)
        loss.backward()
        results[fused] = (loss.detach(), losses, [p.grad.clone() for p in hf.parameters()])
    for other in (False, None):
        torch.testing.assert_close(results[other][0], results[True][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results[other][1], results[True][1], rtol=1e-5, atol=1e-6)
        for g, ref in zip(results[other][2], results[True][2]):
            torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-6)
    weighted = (results[True][1].reshape(-1)[batch["target_index"]] * batch["loss_weights"]).sum()
    torch.testing.assert_close(results[True][0], weighted, rtol=1e-5, atol=1e-6)
