"""Packed rows keep examples apart: a packed row's outputs equal each example run alone."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from flanforge.model.attention import segment_mask
from flanforge.model.training_forward import TrainingModel

torch.manual_seed(0)
VOCAB = 61


def decoder_model():
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "sdpa"
    return TrainingModel(model, arch="decoder", fused=True, zero_stage=0)


def t5_model():
    cfg = T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0)
    return TrainingModel(T5ForConditionalGeneration(cfg).eval(), arch="t5", fused=True, zero_stage=0)


def pack(seqs, length):
    """(ids, segment_ids, position_ids), each (1, length), from token lists laid end to end."""
    ids, seg, pos = [], [], []
    for s, seq in enumerate(seqs, start=1):
        ids += seq
        seg += [s] * len(seq)
        pos += list(range(len(seq)))
    pad = length - len(ids)
    as_row = lambda xs: torch.tensor([xs + [0] * pad])  # noqa: E731
    return as_row(ids), as_row(seg), as_row(pos)


def test_mask_blocks_cross_segment_and_future_positions():
    seg = torch.tensor([[1, 1, 2, 2, 0]])
    mask = segment_mask(seg, seg, causal=True)[0, 0]  # (T, T)
    allowed = mask == 0
    assert allowed[1, 0] and not allowed[0, 1]  # causal within a segment
    assert not allowed[2, 1] and allowed[3, 2]  # no attention across the boundary
    assert allowed[4].sum() == 1  # a padding query keeps one key, so softmax stays finite


def test_decoder_packed_equals_alone():
    model = decoder_model()
    examples = [[5, 9, 12, 7], [3, 44, 8], [20, 21, 22, 23, 24]]
    ids, seg, pos = pack(examples, 16)
    with torch.no_grad():
        packed = model.hidden_states({"input_ids": ids, "segment_ids": seg, "position_ids": pos})[0]
        start = 0
        for ex in examples:
            alone_ids, alone_seg, alone_pos = pack([ex], len(ex))
            alone = model.hidden_states({"input_ids": alone_ids, "segment_ids": alone_seg, "position_ids": alone_pos})[0]
            torch.testing.assert_close(packed[start:start + len(ex)], alone, rtol=1e-5, atol=1e-5)
            start += len(ex)


def test_decoder_without_the_mask_would_leak():
    """Guards the test above: restarting positions alone do not isolate examples."""
    model = decoder_model()
    examples = [[5, 9, 12, 7], [3, 44, 8]]
    ids, _, pos = pack(examples, 7)
    with torch.no_grad():
        leaky = model.hf.base_model(input_ids=ids, position_ids=pos).last_hidden_state[0]
        alone_ids, _, alone_pos = pack([examples[1]], 3)
        alone = model.hf.base_model(input_ids=alone_ids, position_ids=alone_pos).last_hidden_state[0]
    assert not torch.allclose(leaky[4:7], alone, atol=1e-4)


def test_t5_packed_equals_alone():
    model = t5_model()
    pairs = [([5, 9, 12, 1], [0, 30, 31]), ([3, 44, 8, 17, 1], [0, 40]), ([20, 1], [0, 50, 51, 52])]
    enc_ids, enc_seg, _ = pack([p[0] for p in pairs], 16)
    dec_ids, dec_seg, _ = pack([p[1] for p in pairs], 12)
    with torch.no_grad():
        packed = model.hidden_states({"input_ids": enc_ids, "segment_ids": enc_seg,
                                      "decoder_input_ids": dec_ids, "decoder_segment_ids": dec_seg})[0]
        start = 0
        for enc, dec in pairs:
            e_ids, e_seg, _ = pack([enc], len(enc))
            d_ids, d_seg, _ = pack([dec], len(dec))
            alone = model.hidden_states({"input_ids": e_ids, "segment_ids": e_seg,
                                         "decoder_input_ids": d_ids, "decoder_segment_ids": d_seg})[0]
            torch.testing.assert_close(packed[start:start + len(dec)], alone, rtol=1e-5, atol=1e-5)
            start += len(dec)


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_fused_loss_equals_hf_loss(arch):
    """The training forward's loss equals HF's own forward on one unpacked example."""
    model = decoder_model() if arch == "decoder" else t5_model()
    ids = torch.tensor([[5, 9, 12, 7, 30, 31]])
    seg, pos = torch.ones_like(ids), torch.arange(6)[None]
    if arch == "decoder":
        labels = torch.tensor([[-100, -100, -100, 30, 31, -100]])  # labels[t] is the token after position t
        batch = {"input_ids": ids, "segment_ids": seg, "position_ids": pos, "labels": labels}
        with torch.no_grad():
            logits = model.hf(input_ids=ids).logits[0]
        expected = torch.nn.functional.cross_entropy(logits[3:5], torch.tensor([30, 31]))
    else:
        dec = torch.tensor([[0, 30, 31]])
        labels = torch.tensor([[30, 31, 1]])
        batch = {"input_ids": ids, "segment_ids": seg, "decoder_input_ids": dec,
                 "decoder_segment_ids": torch.ones_like(dec), "labels": labels}
        with torch.no_grad():
            logits = model.hf(input_ids=ids, decoder_input_ids=dec).logits[0]
        expected = torch.nn.functional.cross_entropy(logits, labels[0])
    with torch.no_grad():
        loss, losses = model(batch)
    n_targets = (labels != -100).sum()
    assert losses.sum() / n_targets == pytest.approx(expected.item(), rel=1e-5)
    assert loss / n_targets == pytest.approx(expected.item(), rel=1e-5)  # weight 1 per target token
