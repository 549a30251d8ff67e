"""Fused linear cross-entropy, torch path: loss and gradients against the plain reference, and bad input."""

from __future__ import annotations

import pytest
import torch

from flanforge.kernels import CrossEntropyOptions, FusedLinearCrossEntropy, fused_linear_cross_entropy
from flanforge.kernels.cross_entropy import function, torch_chunked

IGNORE = -100
B, T, H, V = 5, 123, 64, 1031  # weird shapes: 615 tokens, a vocabulary no block size divides
CHUNK = 100  # smaller than the 615 tokens and not dividing them

LOSS_VARIANTS = {
    "plain": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 0.05},
    "softcap": {"softcap": 3.0},
    "all": {"label_smoothing": 0.2, "z_loss": 0.05, "softcap": 3.0},
}


def loss_and_grads(loss_fn, hidden, weight, labels, bias, grad_output=None, **options):
    """Loss and the gradients of (hidden, weight, bias) for grad_output (1 for a scalar loss)."""
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight)]
    leaves.append(None if bias is None else bias.detach().clone().requires_grad_())
    loss = loss_fn(leaves[0], leaves[1], labels, bias=leaves[2], **options)
    loss.backward(grad_output)
    return loss.detach(), [None if t is None else t.grad for t in leaves]


def fused(hidden, weight, labels, bias=None, **options):
    return fused_linear_cross_entropy(hidden, weight, labels, bias=bias, **options)


def assert_grads_close(actual, expected, rtol=1e-4, scaled_atol=1e-5):
    """fp32 tolerance: rtol per element, atol relative to the largest gradient entry (sums of many terms)."""
    for name, a, e in zip(("hidden", "weight", "bias"), actual, expected):
        assert (a is None) == (e is None), name
        if a is not None:
            atol = scaled_atol * e.abs().max().item()
            torch.testing.assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m, name=name: f"grad of {name}: {m}")


def grad_output_for(reduction, labels, seed=1):
    if reduction != "none":
        return None
    return torch.randn(labels.shape, generator=torch.Generator().manual_seed(seed))


def with_ignored_row(labels):
    """Every label of the second sequence ignored (a row of the batch that contributes nothing)."""
    labels = labels.clone()
    labels[1] = IGNORE
    return labels


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("variant", LOSS_VARIANTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fp32_matches_reference(reference, inputs, reduction, variant, with_bias):
    hidden, weight, labels, bias = inputs((B, T), H, V, bias=with_bias)
    labels = with_ignored_row(labels)
    options = {**LOSS_VARIANTS[variant], "reduction": reduction}
    grad_output = grad_output_for(reduction, labels)

    loss, grads = loss_and_grads(fused, hidden, weight, labels, bias, grad_output, chunk_size=CHUNK, **options)
    ref_loss, ref_grads = loss_and_grads(reference, hidden, weight, labels, bias, grad_output, **options)

    assert loss.shape == ref_loss.shape
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(grads, ref_grads)
    if reduction == "none":
        assert torch.all(loss[1] == 0.0), "ignored tokens must have zero loss"


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64, 1000])
def test_2d_input_any_chunk_size(reference, inputs, chunk_size):
    hidden, weight, labels, bias = inputs((B * T,), H, V)
    loss, grads = loss_and_grads(fused, hidden, weight, labels, bias, chunk_size=chunk_size, z_loss=0.01)
    ref_loss, ref_grads = loss_and_grads(reference, hidden, weight, labels, bias, z_loss=0.01)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(grads, ref_grads)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_half_precision_against_fp32_reference(reference, inputs, dtype, reduction):
    hidden, weight, labels, bias = inputs((B, T), H, V, dtype=dtype)
    labels = with_ignored_row(labels)
    options = {"label_smoothing": 0.1, "z_loss": 0.01, "softcap": 5.0, "reduction": reduction}
    grad_output = grad_output_for(reduction, labels)

    loss, grads = loss_and_grads(fused, hidden, weight, labels, bias, grad_output, chunk_size=CHUNK, **options)
    up = [None if t is None else t.float() for t in (hidden, weight, bias)]
    ref_loss, ref_grads = loss_and_grads(reference, up[0], up[1], labels, up[2], grad_output, **options)

    assert loss.dtype == torch.float32, "losses are accumulated and returned in fp32"
    assert [g.dtype for g in grads] == [dtype] * 3, "gradients come back in the input dtype"
    # Logits rounded to half precision move each token's loss by ~1e-2.
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=2e-2)
    for name, g, ref in zip(("hidden", "weight", "bias"), grads, ref_grads):
        rel = (g.float() - ref).norm() / ref.norm()
        assert rel < 2e-2, f"grad of {name}: relative error {rel:.3g}"


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored_gives_zero_loss_and_grads(inputs, reduction):
    hidden, weight, labels, bias = inputs((B, T), H, V)
    labels = torch.full_like(labels, IGNORE)
    loss, grads = loss_and_grads(fused, hidden, weight, labels, bias, reduction=reduction, chunk_size=CHUNK)
    assert loss.item() == 0.0  # "mean" is 0, not the reference's 0/0 = NaN
    for g in grads:
        assert torch.count_nonzero(g) == 0


def test_ignore_index_may_be_a_vocabulary_id(reference, inputs):
    hidden, weight, labels, bias = inputs((B * T,), H, V)
    labels[labels == IGNORE] = 0  # padding id 0 doubles as ignore_index
    loss, grads = loss_and_grads(fused, hidden, weight, labels, bias, ignore_index=0, chunk_size=CHUNK)
    ref_loss, ref_grads = loss_and_grads(reference, hidden, weight, labels, bias, ignore_index=0)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(grads, ref_grads)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_double(reduction):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(7, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 6, IGNORE, 3, 3, 1])
    options = {"label_smoothing": 0.1, "z_loss": 0.1, "softcap": 2.0, "reduction": reduction, "chunk_size": 4}

    def fn(h, w, b):
        return fused_linear_cross_entropy(h, w, labels, bias=b, **options)

    # A repeated backward recomputes rather than reusing the forward's gradients,
    # so the two agree to rounding, not bit for bit.
    assert torch.autograd.gradcheck(fn, (hidden, weight, bias), nondet_tol=1e-12)


def test_second_backward_through_retained_graph(reference, inputs):
    hidden, weight, labels, bias = inputs((B, T), H, V)
    leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    loss = fused(leaves[0], leaves[1], labels, leaves[2], chunk_size=CHUNK)
    loss.backward(retain_graph=True)
    loss.backward(torch.tensor(0.5))
    _, ref_grads = loss_and_grads(reference, hidden, weight, labels, bias)
    assert_grads_close([t.grad for t in leaves], [1.5 * g for g in ref_grads])


def test_only_requested_grads_are_computed(reference, inputs):
    hidden, weight, labels, _ = inputs((B * T,), H, V, bias=False)
    weight.requires_grad_()  # hidden is frozen
    fused(hidden, weight, labels, chunk_size=CHUNK).backward()
    ref_weight = weight.detach().clone().requires_grad_()
    reference(hidden, ref_weight, labels).backward()
    assert hidden.grad is None
    assert_grads_close([weight.grad], [ref_weight.grad])


def test_no_grad_forward_matches(reference, inputs):
    hidden, weight, labels, bias = inputs((B, T), H, V)
    with torch.no_grad():
        loss = fused(hidden.requires_grad_(), weight, labels, bias, z_loss=0.01)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference(hidden, weight, labels, bias, z_loss=0.01), rtol=1e-5, atol=1e-5)


def test_logits_never_exceed_one_chunk(monkeypatch, inputs):
    """The chunk op only ever sees chunk_size rows of logits, one buffer reused for all chunks."""
    seen = []
    real_op = torch_chunked.loss_and_grad_

    def recording_op(logits, *args):
        seen.append((tuple(logits.shape), logits.data_ptr()))
        real_op(logits, *args)

    monkeypatch.setattr(function, "select_chunk_op", lambda impl, device: recording_op)
    hidden, weight, labels, bias = inputs((B, T), H, V)
    fused(hidden.requires_grad_(), weight, labels, bias, chunk_size=CHUNK).backward()
    assert [shape for shape, _ in seen] == [(CHUNK, V)] * 6 + [(B * T - 6 * CHUNK, V)]
    assert len({ptr for _, ptr in seen}) == 1


def test_default_chunk_fits_the_logits_budget():
    for n_rows, vocab in [(8192, 32000), (10, 32000), (100_000, 256_000), (3, 50_000_000)]:
        rows = function.chunk_rows(n_rows, vocab, 64, None)
        assert 1 <= rows <= n_rows
        assert rows == 1 or rows * vocab * 4 <= function.LOGITS_CHUNK_BYTES
    assert function.chunk_rows(615, V, 64, CHUNK) == CHUNK
    assert function.chunk_rows(50, V, 64, CHUNK) == 50


def test_gpu_chunks_hold_about_as_many_logits_as_hidden_states():
    """Liger-Kernel's sizing: ceil(V / H) chunks, rows a power of two (H=4096, V=128256: 32 chunks)."""
    rows = function.chunk_rows(16384, 128256, 4096, None, "cuda")
    assert rows == 512 and rows * 128256 <= 2 * 16384 * 4096
    assert function.chunk_rows(10, 32000, 4096, None, "cuda") == 2  # ceil(10 / 8) = 2
    assert function.chunk_rows(100, 50, 4096, None, "cuda") == 100  # a small vocabulary: one chunk

def test_module_matches_functional(inputs):
    hidden, weight, labels, bias = inputs((B, T), H, V)
    module = FusedLinearCrossEntropy(label_smoothing=0.1, softcap=3.0, reduction="sum", chunk_size=CHUNK)
    expected = fused(hidden, weight, labels, bias, label_smoothing=0.1, softcap=3.0, reduction="sum")
    torch.testing.assert_close(module(hidden, weight, labels, bias), expected)
    assert "softcap=3.0" in repr(module)


def test_device_choice(monkeypatch):
    assert function.select_chunk_op("auto", torch.device("cpu")) is torch_chunked.loss_and_grad_
    assert function.select_chunk_op("torch", torch.device("cuda")) is torch_chunked.loss_and_grad_
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        function.select_chunk_op("triton", torch.device("cpu"))


# --- bad input ----------------------------------------------------------------


def test_hidden_size_mismatch_names_the_tensors():
    hidden, weight, labels = torch.randn(B, T, H), torch.randn(V, 32), torch.zeros(B, T, dtype=torch.long)
    with pytest.raises(ValueError, match=r"hidden \(5, 123, 64\) and weight \(1031, 32\): hidden size 64 != 32"):
        fused_linear_cross_entropy(hidden, weight, labels)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("labels_shape", r"labels \(5, 122\) and hidden \(5, 123, 64\)"),
        ("bias_shape", r"bias \(1030,\) and weight \(1031, 64\)"),
        ("hidden_rank", r"hidden \(615,\) must be \(N, H\) or \(B, T, H\)"),
        ("weight_rank", r"weight \(1031, 64, 1\) must be \(V, H\)"),
        ("weight_dtype", r"hidden \(5, 123, 64\) is torch.float32 but weight \(1031, 64\) is torch.float64"),
        ("bias_dtype", r"hidden \(5, 123, 64\) is torch.float32 but bias \(1031,\) is torch.bfloat16"),
        ("int_hidden", r"hidden \(5, 123, 64\) has dtype torch.int64"),
        ("float_labels", r"labels \(5, 123\) has dtype torch.float32"),
        ("device", r"one device: hidden \(5, 123, 64\) on meta, weight \(1031, 64\) on cpu"),
    ],
)
def test_mismatches_raise_value_error(case, pattern):
    hidden, weight = torch.randn(B, T, H), torch.randn(V, H)
    labels, bias = torch.zeros(B, T, dtype=torch.long), torch.zeros(V)
    if case == "labels_shape":
        labels = labels[:, 1:]
    elif case == "bias_shape":
        bias = bias[1:]
    elif case == "hidden_rank":
        hidden, labels = hidden[:, :, 0].reshape(-1), labels.reshape(-1)[:1]
    elif case == "weight_rank":
        weight = weight[..., None]
    elif case == "weight_dtype":
        weight = weight.double()
    elif case == "bias_dtype":
        bias = bias.bfloat16()
    elif case == "int_hidden":
        hidden = hidden.long()
    elif case == "float_labels":
        labels = labels.float()
    elif case == "device":
        hidden = hidden.to("meta")
    with pytest.raises(ValueError, match=pattern):
        fused_linear_cross_entropy(hidden, weight, labels, bias=bias)


@pytest.mark.parametrize("bad_label", [V, -1, -101])
def test_labels_out_of_range_raise(bad_label):
    hidden, weight = torch.randn(B, T, H), torch.randn(V, H)
    labels = torch.zeros(B, T, dtype=torch.long)
    labels[2, 7] = bad_label
    labels[3, 0] = IGNORE  # allowed
    with pytest.raises(ValueError, match=r"labels \(5, 123\) hold values outside \[0, 1031\).*ignore_index=-100"):
        fused_linear_cross_entropy(hidden, weight, labels)


@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"label_smoothing": 1.5}, "label_smoothing must be in"),
        ({"z_loss": -1.0}, "z_loss must be"),
        ({"softcap": 0.0}, "softcap must be"),
        ({"chunk_size": 0}, "chunk_size must be"),
        ({"impl": "cuda"}, "impl must be one of"),
        ({"ignore_index": 1.0}, "ignore_index must be an int"),
    ],
)
def test_bad_options_raise(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        CrossEntropyOptions(**options)
    with pytest.raises(ValueError, match=pattern):
        FusedLinearCrossEntropy(**options)


def test_unchecked_labels_skip_the_host_sync_but_not_the_loss(monkeypatch, inputs):
    """check_labels=False (the training forward) computes "sum" without the labels' range check, whose
    device-to-host copy would stall a GPU every step; the result is the checked one's."""
    hidden, weight, labels, bias = inputs((B, T), H, V)
    checked = fused(hidden, weight, labels, bias, reduction="sum")

    def no_sync(*args):
        raise AssertionError("count_valid_labels ran")

    monkeypatch.setattr(function, "count_valid_labels", no_sync)
    assert torch.equal(fused(hidden, weight, labels, bias, reduction="sum", check_labels=False), checked)
    with pytest.raises(AssertionError, match="count_valid_labels ran"):  # "mean" needs the count
        fused(hidden, weight, labels, bias, reduction="mean", check_labels=False)
