"""Per-segment attention (the decoder's) against the dense block-diagonal mask, outputs and gradients."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from flanforge.model.attention import SEGMENT_ATTENTION, register_segment_attention, segment_mask, segment_ranges


def test_segment_ranges_from_packed_ids():
    seg = torch.tensor([[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]])
    assert segment_ranges(seg) == [[(0, 3), (3, 5)], [(0, 7)], []]


def packed_batch(gen: torch.Generator, rows: int, length: int, vocab: int):
    """Rows of 1-4 examples of random lengths, back to back, padding at the end (some rows full)."""
    ids = torch.randint(3, vocab, (rows, length), generator=gen)
    seg = torch.zeros(rows, length, dtype=torch.long)
    pos = torch.zeros(rows, length, dtype=torch.long)
    for r in range(rows):
        at, s = 0, 1
        while at < length and s <= 4:
            n = min(int(torch.randint(1, length // 2, (1,), generator=gen)), length - at)
            if r == 0 and s == 1:
                n = length  # one row filled by a single example
            seg[r, at:at + n], pos[r, at:at + n] = s, torch.arange(n)
            at, s = at + n, s + 1
    return ids, seg, pos


def test_segment_attention_equals_dense_mask():
    register_segment_attention()
    cfg = LlamaConfig(vocab_size=53, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).base_model
    ids, seg, pos = packed_batch(torch.Generator().manual_seed(1), rows=5, length=23, vocab=53)
    real = (seg > 0).unsqueeze(-1)  # padding outputs differ by design (zeros vs a one-key softmax)

    def run(implementation, **inputs):
        model.zero_grad()
        model.config._attn_implementation = implementation
        out = model(input_ids=ids, position_ids=pos, use_cache=False, **inputs).last_hidden_state
        (out * real).square().sum().backward()
        return out * real, [p.grad.clone() for p in model.parameters()]

    dense, dense_grads = run("sdpa", attention_mask=segment_mask(seg, seg, causal=True))
    per_segment, grads = run(SEGMENT_ATTENTION, segments=segment_ranges(seg))
    torch.testing.assert_close(per_segment, dense, rtol=1e-5, atol=1e-5)
    for g, ref in zip(grads, dense_grads):  # sums over many tokens: atol relative to the largest entry
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    # Guard: with each row taken as one segment, examples would see each other.
    leaky, _ = run(SEGMENT_ATTENTION, segments=[[(0, ids.shape[1])]] * ids.shape[0])
    assert not torch.allclose(leaky, dense, atol=1e-4)
