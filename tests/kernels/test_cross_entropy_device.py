"""Fused linear cross-entropy, Triton path on a real device, fp32 and bf16, against the torch reference.

Runs on CUDA when torch sees a GPU (Triton compiled for real), at a large
vocabulary as well as odd shapes. ``benchmarks/gpu/run.sh`` runs this file on a
GPU; its ``--cpu-smoke`` mode runs it on CPU under the Triton interpreter
(``FLANFORGE_KERNEL_DEVICE=cpu TRITON_INTERPRET=1``) at toy shapes, so the file
cannot rot between GPU runs. Without CUDA and without that setting it is skipped.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

DEVICE = os.environ.get("FLANFORGE_KERNEL_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
    pytest.mark.skipif(DEVICE is None, reason="no CUDA device (benchmarks/gpu/run.sh --cpu-smoke runs this on CPU)"),
    pytest.mark.skipif(DEVICE == "cpu" and not INTERPRETED, reason="on CPU the Triton kernel needs TRITON_INTERPRET=1"),
]

# (lead shape, hidden size, vocabulary): odd sizes no block divides, and Llama-3's vocabulary on a GPU.
SHAPES = {
    "cuda": [((3, 333), 256, 32003), ((2048,), 1024, 128256)],
    "cpu": [((2, 5), 16, 37)],
}.get(DEVICE or "cpu", [((2, 5), 16, 37)])
OPTIONS = {"plain": {}, "all": {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 30.0}}


def run_fused(hidden, weight, labels, bias, grad_output, options):
    from flanforge.kernels import fused_linear_cross_entropy

    leaves = [None if t is None else t.to(DEVICE, copy=True).requires_grad_() for t in (hidden, weight, bias)]
    loss = fused_linear_cross_entropy(leaves[0], leaves[1], labels.to(DEVICE), bias=leaves[2], impl="triton",
                                      **options)
    loss.backward(None if grad_output is None else grad_output.to(DEVICE))
    return loss.detach().cpu(), [None if t is None else t.grad.cpu() for t in leaves]


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("variant", OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}x{s[2]}")
def test_triton_on_device_matches_reference(reference, inputs, shape, dtype, variant, reduction):
    lead, hidden_size, vocab = shape
    hidden, weight, labels, bias = inputs(lead, hidden_size, vocab, dtype=dtype, bias=variant == "all", seed=5)
    options = {**OPTIONS[variant], "reduction": reduction}
    grad_output = torch.randn(lead, generator=torch.Generator().manual_seed(6)) if reduction == "none" else None

    loss, grads = run_fused(hidden, weight, labels, bias, grad_output, options)
    # The reference in fp32 (fp64 on CPU) from the same (rounded) inputs.
    ref_dtype = torch.float64 if DEVICE == "cpu" else torch.float32
    leaves = [None if t is None else t.to(DEVICE, ref_dtype, copy=True).requires_grad_() for t in (hidden, weight, bias)]
    ref = reference(leaves[0], leaves[1], labels.to(DEVICE), bias=leaves[2], **options)
    ref.backward(None if grad_output is None else grad_output.to(DEVICE, ref_dtype))

    assert loss.dtype == torch.float32 and loss.shape == ref.shape
    low = dtype != torch.float32
    torch.testing.assert_close(loss, ref.detach().cpu().float(), **(dict(rtol=2e-2, atol=2e-2) if low
                                                                     else dict(rtol=1e-4, atol=1e-4)))
    for name, got, leaf in zip(("hidden", "weight", "bias"), grads, leaves):
        if leaf is None:
            assert got is None
            continue
        assert got.dtype == dtype, f"grad of {name} must come back in the input dtype"
        expected = leaf.grad.cpu().float()
        rel = ((got.float() - expected).norm() / expected.norm()).item()
        assert rel < (2e-2 if low else 1e-4), f"grad of {name}: relative error {rel:.3g}"
