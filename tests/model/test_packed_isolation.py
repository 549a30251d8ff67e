"""Packed rows keep examples apart: a packed row's outputs equal each example run alone,
for every attention implementation that runs here (FlexAttention: forward only on CPU).

With a GPU (``benchmarks/gpu/run.sh`` runs this file there) every case also runs on
CUDA, FlexAttention compiled, and the training gradients of flex and the dense mask
are compared."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from flanforge.model import attention
from flanforge.model.attention import segment_mask
from flanforge.model.attention.flex import segment_block_mask
from flanforge.model.training_forward import TrainingModel

torch.manual_seed(0)
VOCAB = 61
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def implementations(device, training=False, arch="decoder"):
    return [name for name in attention.names()
            if attention.unavailable_reason(name, device, training=training, dropout=0.0, arch=arch) is None]


# (device, implementation) for every implementation whose forward runs on the device.
CASES = [pytest.param(d, i, id=f"{d}-{i}") for d in DEVICES for i in implementations(d)]
T5_CASES = [pytest.param(d, i, id=f"{d}-{i}") for d in DEVICES for i in implementations(d, arch="t5")]
TOL = {"cpu": dict(rtol=1e-5, atol=1e-5), "cuda": dict(rtol=1e-4, atol=1e-4)}


def decoder_model(impl="sdpa_mask", device="cpu"):
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval().to(device)
    attention.use(model, impl)
    return TrainingModel(model, arch="decoder", fused=True, zero_stage=0)


def t5_model(impl="sdpa_mask", device="cpu"):
    cfg = T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0)
    model = T5ForConditionalGeneration(cfg).eval().to(device)
    attention.use(model, impl)
    return TrainingModel(model, arch="t5", fused=True, zero_stage=0)


def pack(seqs, length, device="cpu"):
    """(ids, segment_ids, position_ids), each (1, length), from token lists laid end to end."""
    ids, seg, pos = [], [], []
    for s, seq in enumerate(seqs, start=1):
        ids += seq
        seg += [s] * len(seq)
        pos += list(range(len(seq)))
    pad = length - len(ids)
    as_row = lambda xs: torch.tensor([xs + [0] * pad], device=device)  # noqa: E731
    return as_row(ids), as_row(seg), as_row(pos)


def test_mask_blocks_cross_segment_and_future_positions():
    seg = torch.tensor([[1, 1, 2, 2, 0]])
    mask = segment_mask(seg, seg, causal=True)[0, 0]  # (T, T)
    allowed = mask == 0
    assert allowed[1, 0] and not allowed[0, 1]  # causal within a segment
    assert not allowed[2, 1] and allowed[3, 2]  # no attention across the boundary
    assert allowed[4].sum() == 1  # a padding query keeps one key, so softmax stays finite


def random_examples(lengths, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(2, VOCAB, (n,), generator=gen).tolist() for n in lengths]


# Lengths cross FlexAttention's 128-token blocks, so whole blocks are skipped and others are partial.
DECODER_LENGTHS = [100, 60, 90, 30]


@pytest.mark.parametrize(("device", "impl"), CASES)
def test_decoder_packed_equals_alone(device, impl):
    model = decoder_model(impl, device)
    examples = random_examples(DECODER_LENGTHS, seed=1)
    ids, seg, pos = pack(examples, 300, device)
    with torch.no_grad():
        packed = model.hidden_states({"input_ids": ids, "segment_ids": seg, "position_ids": pos})[0]
        assert torch.isfinite(packed).all()  # padding rows too
        start = 0
        for ex in examples:
            alone_ids, alone_seg, alone_pos = pack([ex], len(ex), device)
            alone = model.hidden_states({"input_ids": alone_ids, "segment_ids": alone_seg, "position_ids": alone_pos})[0]
            torch.testing.assert_close(packed[start:start + len(ex)], alone, **TOL[device])
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


@pytest.mark.parametrize(("device", "impl"), T5_CASES)
def test_t5_packed_equals_alone(device, impl):
    model = t5_model(impl, device)
    pairs = list(zip(random_examples([70, 90, 40], seed=2), random_examples([30, 100, 20], seed=3)))
    enc_ids, enc_seg, _ = pack([p[0] for p in pairs], 256, device)
    dec_ids, dec_seg, _ = pack([p[1] for p in pairs], 160, device)
    with torch.no_grad():
        packed = model.hidden_states({"input_ids": enc_ids, "segment_ids": enc_seg,
                                      "decoder_input_ids": dec_ids, "decoder_segment_ids": dec_seg})[0]
        assert torch.isfinite(packed).all()
        start = 0
        for enc, dec in pairs:
            e_ids, e_seg, _ = pack([enc], len(enc), device)
            d_ids, d_seg, _ = pack([dec], len(dec), device)
            alone = model.hidden_states({"input_ids": e_ids, "segment_ids": e_seg,
                                         "decoder_input_ids": d_ids, "decoder_segment_ids": d_seg})[0]
            torch.testing.assert_close(packed[start:start + len(dec)], alone, **TOL[device])
            start += len(dec)


def test_block_mask_skips_blocks_across_segments():
    """The flex mask is block-sparse: a block whose queries and keys share no segment is never computed."""
    _, seg, _ = pack(random_examples(DECODER_LENGTHS, seed=1), 300)
    blocks = segment_block_mask(seg, seg, causal=True).to_dense()[0, 0]  # (3, 3) query x key blocks
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1]])  # block 2 (tokens 256..299) sees only segments 3-4
    assert torch.equal(blocks.int(), expected)


def test_block_mask_allows_what_the_dense_mask_allows():
    seg = torch.tensor([[1, 1, 2, 2, 2, 0, 0], [1, 2, 2, 3, 3, 3, 3]])
    from torch.nn.attention.flex_attention import create_mask

    for causal in (True, False):
        block = segment_block_mask(seg, seg, causal=causal, block_size=4)
        allowed = create_mask(block.mask_mod, 2, 1, 7, 7, device="cpu")[:, 0]  # (B, T, T)
        dense = segment_mask(seg, seg, causal=causal)[:, 0] == 0
        real = (seg > 0)[:, :, None]  # padding queries differ by design; their outputs are unused
        assert torch.equal(allowed & real, dense & real)


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


def agreement_batch(arch, device):
    ids, seg, pos = pack(random_examples(DECODER_LENGTHS, seed=4), 300, device)
    batch = {"input_ids": ids, "segment_ids": seg, "position_ids": pos}
    if arch == "t5":
        dec_ids, dec_seg, _ = pack(random_examples([30, 100, 20, 5], seed=5), 160, device)
        batch.update(decoder_input_ids=dec_ids, decoder_segment_ids=dec_seg)
    labels = batch.get("decoder_input_ids", ids).roll(-1, dims=1)
    batch["labels"] = labels.masked_fill(batch.get("decoder_segment_ids", seg) == 0, -100)
    return batch


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_implementations_agree(arch, device):
    """Same weights, same packed batch: every implementation gives the dense-mask result
    (guards the tests above, which would pass for an implementation that dropped T5's position bias)."""
    model = decoder_model(device=device) if arch == "decoder" else t5_model(device=device)
    batch = agreement_batch(arch, device)
    real = (batch.get("decoder_segment_ids", batch["segment_ids"]) > 0)[0]
    outputs = {}
    with torch.no_grad():
        for impl in implementations(device, arch=arch):
            attention.use(model.hf, impl)
            outputs[impl] = TrainingModel(model.hf, arch=arch, fused=True, zero_stage=0).hidden_states(batch)[0][real]
    for impl, out in outputs.items():
        torch.testing.assert_close(out, outputs["sdpa_mask"], **TOL[device], msg=lambda m, i=impl: f"{i}: {m}")


# (arch, device, implementation) for every implementation but the dense mask that trains on the device.
GRADIENT_CASES = [pytest.param(a, d, i, id=f"{a}-{d}-{i}") for a in ("decoder", "t5") for d in DEVICES
                  for i in implementations(d, training=True, arch=a) if i != "sdpa_mask"]


@pytest.mark.parametrize(("arch", "device", "impl"), GRADIENT_CASES)
def test_gradients_equal_the_dense_mask_ones(arch, device, impl):
    """Training through any implementation (FlexAttention: its backward, T5's position bias a
    captured tensor that needs a gradient; per-segment attention) gives the dense mask's gradients."""
    model = decoder_model(device=device) if arch == "decoder" else t5_model(device=device)
    batch = agreement_batch(arch, device)
    grads = {}
    for name in ("sdpa_mask", impl):
        attention.use(model.hf, name)
        model.hf.zero_grad()
        TrainingModel(model.hf, arch=arch, fused=True, zero_stage=0)(batch)[0].backward()
        grads[name] = {n: p.grad.clone() for n, p in model.hf.named_parameters() if p.grad is not None}
    assert grads[impl].keys() == grads["sdpa_mask"].keys()
    for name, grad in grads[impl].items():
        torch.testing.assert_close(grad, grads["sdpa_mask"][name], rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="transformers compiles its BlockMask builder: a minute on CPU")
def test_hf_forward_with_padding_under_flex():
    """Evaluation may run the model's own forward with a 2D padding mask under flex: it still
    masks causally and drops padding (transformers builds the BlockMask with the registered mask function)."""
    model = decoder_model(device="cuda")
    ids = torch.randint(2, VOCAB, (2, 9), generator=torch.Generator().manual_seed(6)).cuda()
    pad = torch.ones_like(ids)
    pad[1, 6:] = 0
    with torch.no_grad():
        dense = model.hf(input_ids=ids, attention_mask=pad).logits
        attention.use(model.hf, "flex")
        flex = model.hf(input_ids=ids, attention_mask=pad).logits
    torch.testing.assert_close(flex[pad.bool()], dense[pad.bool()], **TOL["cuda"])
