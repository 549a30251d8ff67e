"""Fixtures shared by the cross-entropy kernel tests: inputs and the plain torch reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

IGNORE = -100


def reference_cross_entropy(
    hidden, weight, labels, bias=None, *, ignore_index=IGNORE, label_smoothing=0.0, z_loss=0.0, softcap=None,
    reduction="mean",
):
    """The definition the kernel must meet, with the full logits (autograd does the gradients)."""
    logits = hidden.reshape(-1, hidden.shape[-1]) @ weight.T  # (N, V)
    if bias is not None:
        logits = logits + bias
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    flat_labels = labels.reshape(-1)
    loss = F.cross_entropy(
        logits, flat_labels, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )
    valid = flat_labels != ignore_index
    z_term = z_loss * torch.logsumexp(logits, dim=-1).square() * valid  # (N,)
    if reduction == "none":
        return (loss + z_term).view(labels.shape)
    if reduction == "sum":
        return loss + z_term.sum()
    return loss + z_term.sum() / valid.sum()


def make_inputs(lead_shape, hidden_size, vocab, *, dtype=torch.float32, bias=True, seed=0):
    """hidden lead_shape + (H,), weight (V, H), labels lead_shape with ~1/8 ignored, bias (V,) or None.

    The logits come out with a spread of a few units, so softcap and z-loss change them visibly.
    """
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*lead_shape, hidden_size, generator=gen) * 2.0
    weight = torch.randn(vocab, hidden_size, generator=gen) / hidden_size**0.5
    labels = torch.randint(0, vocab, lead_shape, generator=gen)
    labels[torch.rand(lead_shape, generator=gen) < 0.125] = IGNORE
    b = torch.randn(vocab, generator=gen) if bias else None
    return hidden.to(dtype), weight.to(dtype), labels, None if b is None else b.to(dtype)


@pytest.fixture(scope="session")
def reference():
    return reference_cross_entropy


@pytest.fixture(scope="session")
def inputs():
    return make_inputs
