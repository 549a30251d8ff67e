"""Fused linear cross-entropy with per-token weights: the weighted loss, its gradients against the
reference, the per-token losses returned for logging, and a weighted sum's gradients computed in forward."""

from __future__ import annotations

import pytest
import torch

from flanforge.kernels import fused_linear_cross_entropy
from flanforge.kernels.cross_entropy import function

IGNORE = -100
B, T, H, V = 3, 37, 32, 211
CHUNK = 25


def weighted_reference(reference, hidden, weight, labels, bias, token_weights, reduction, **options):
    per_token = reference(hidden, weight, labels, bias, reduction="none", **options)  # (B, T)
    weighted = per_token * token_weights
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    return weighted.sum() / (labels != IGNORE).sum()


def run(fn, hidden, weight, bias, grad_output):
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight, bias)]
    out = fn(*leaves)
    loss, extra = out if isinstance(out, tuple) else (out, None)
    loss.backward(grad_output)
    return loss.detach(), extra, [t.grad for t in leaves]


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_weighted_loss_and_grads_match_reference(reference, inputs, reduction):
    hidden, weight, labels, bias = inputs((B, T), H, V)
    token_weights = torch.rand((B, T), generator=torch.Generator().manual_seed(3)) * 2.0
    options = {"z_loss": 0.02, "label_smoothing": 0.1, "softcap": 4.0}
    grad_output = torch.randn(B, T) if reduction == "none" else None

    loss, token_losses, grads = run(
        lambda h, w, b: fused_linear_cross_entropy(
            h, w, labels, bias=b, token_weights=token_weights, reduction=reduction, return_token_losses=True,
            chunk_size=CHUNK, **options),
        hidden, weight, bias, grad_output)
    ref_loss, _, ref_grads = run(
        lambda h, w, b: weighted_reference(reference, h, w, labels, b, token_weights, reduction, **options),
        hidden, weight, bias, grad_output)

    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for name, g, ref in zip(("hidden", "weight", "bias"), grads, ref_grads):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item(), msg=name)
    # The per-token losses are the unweighted ones, detached, zero where ignored.
    unweighted = reference(hidden, weight, labels, bias, reduction="none", **options)
    assert token_losses.shape == labels.shape and not token_losses.requires_grad
    torch.testing.assert_close(token_losses, unweighted, rtol=1e-5, atol=1e-5)
    assert torch.all(token_losses[labels == IGNORE] == 0)


def test_weights_change_the_gradient(inputs):
    """Guards the test above: weights that are not all equal give another gradient than no weights."""
    hidden, weight, labels, bias = inputs((B, T), H, V)
    token_weights = torch.linspace(0.0, 2.0, B * T).view(B, T)
    plain = run(lambda h, w, b: fused_linear_cross_entropy(h, w, labels, bias=b, reduction="sum"),
                hidden, weight, bias, None)[2]
    weighted = run(lambda h, w, b: fused_linear_cross_entropy(h, w, labels, bias=b, reduction="sum",
                                                              token_weights=token_weights),
                   hidden, weight, bias, None)[2]
    assert not torch.allclose(plain[0], weighted[0], rtol=1e-3)


def test_weighted_sum_computes_its_gradients_in_forward(monkeypatch, inputs):
    """A weighted "sum" runs the chunk loop once (forward); "none" runs it again in backward."""
    calls = []
    real = function.chunked_loss_and_grads

    def counting(*args):
        calls.append(args[-1])  # need_grads
        return real(*args)

    monkeypatch.setattr(function, "chunked_loss_and_grads", counting)
    hidden, weight, labels, bias = inputs((B, T), H, V)
    token_weights = torch.rand(B, T)
    run(lambda h, w, b: fused_linear_cross_entropy(h, w, labels, bias=b, reduction="sum",
                                                   token_weights=token_weights), hidden, weight, bias, None)
    assert calls == [(True, True, True)]
    calls.clear()
    run(lambda h, w, b: (fused_linear_cross_entropy(h, w, labels, bias=b, reduction="none") * token_weights).sum(),
        hidden, weight, bias, None)
    assert calls == [(False, False, False), (True, True, True)]


@pytest.mark.parametrize("bad, pattern", [
    (torch.ones(B, T + 1), r"token_weights \(3, 38\) and labels \(3, 37\)"),
    (torch.ones(B, T, dtype=torch.long), "must be floating point"),
])
def test_bad_token_weights_raise(inputs, bad, pattern):
    hidden, weight, labels, bias = inputs((B, T), H, V)
    with pytest.raises(ValueError, match=pattern):
        fused_linear_cross_entropy(hidden, weight, labels, bias=bias, token_weights=bad, reduction="sum")
