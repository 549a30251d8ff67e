"""Fused linear cross-entropy, Triton path, on CPU under the Triton interpreter.

TRITON_INTERPRET=1 has to be set before the kernel is defined, so the kernel
runs in one fresh subprocess (``triton_interpreter_child.py``, started with
``sys.executable``) for all cases; this process builds the inputs, computes the
reference and compares. Shapes are small (7 tokens, H=16, V=37): the
interpreter is slow per program.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

IGNORE = -100
H, V = 16, 37
CHILD = Path(__file__).with_name("triton_interpreter_child.py")
ALL_OPTIONS = {"label_smoothing": 0.1, "z_loss": 0.05, "softcap": 3.0}

# max_block_v=16 makes the kernel sweep V=37 in three blocks, the last one
# masked; 64 covers it in one.
CASES = {
    "mean_bias_chunks": dict(lead=(7,), options={"chunk_size": 3}, max_block_v=16),
    "none_all_options_3d": dict(lead=(1, 7), bias=False, options={**ALL_OPTIONS, "reduction": "none"}, max_block_v=16),
    "sum_one_block": dict(lead=(7,), options={"z_loss": 0.05, "reduction": "sum"}, max_block_v=64),
    "bf16_all_options": dict(lead=(7,), dtype=torch.bfloat16, options={**ALL_OPTIONS, "chunk_size": 4}, max_block_v=16),
    "all_ignored": dict(lead=(7,), ignore_all=True, options={}, max_block_v=16),
}


def build_case(make_inputs, lead, options, max_block_v, dtype=torch.float32, bias=True, ignore_all=False):
    hidden, weight, labels, b = make_inputs(lead, H, V, dtype=dtype, bias=bias, seed=3)
    labels.view(-1)[2] = IGNORE
    if ignore_all:
        labels.fill_(IGNORE)
    grad_output = None
    if options.get("reduction") == "none":
        grad_output = torch.randn(lead, generator=torch.Generator().manual_seed(4))
    return dict(hidden=hidden, weight=weight, bias=b, labels=labels, grad_output=grad_output,
                options=options, max_block_v=max_block_v)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory, inputs):
    """(inputs, results) per case name: the subprocess's Triton results for inputs built here."""
    built = {name: build_case(inputs, **spec) for name, spec in CASES.items()}
    workdir = tmp_path_factory.mktemp("triton_ce")
    torch.save(built, workdir / "cases.pt")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(workdir / "cases.pt"), str(workdir / "results.pt")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"interpreter subprocess failed:\n{proc.stderr[-4000:]}"
    return built, torch.load(workdir / "results.pt", weights_only=True)


@pytest.mark.parametrize("name", CASES)
def test_triton_matches_reference(interpreted, reference, name):
    built, results = interpreted
    case, got = built[name], results[name]
    low_precision = case["hidden"].dtype != torch.float32
    leaves = [None if case[k] is None else case[k].float().requires_grad_() for k in ("hidden", "weight", "bias")]
    loss_options = {k: v for k, v in case["options"].items() if k != "chunk_size"}
    ref_loss = reference(leaves[0], leaves[1], case["labels"], bias=leaves[2], **loss_options)
    if name == "all_ignored":
        assert got["loss"].item() == 0.0  # not the reference's NaN
        assert all(torch.count_nonzero(g) == 0 for g in got["grads"])
        return
    ref_loss.backward(case["grad_output"])

    assert got["loss"].shape == ref_loss.shape
    tol = dict(rtol=2e-2, atol=2e-2) if low_precision else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["loss"], ref_loss.detach(), **tol)
    for label, g, leaf in zip(("hidden", "weight", "bias"), got["grads"], leaves):
        assert (g is None) == (leaf is None), label
        if g is None:
            continue
        assert g.dtype == case["hidden"].dtype, f"grad of {label} must come back in the input dtype"
        ref = leaf.grad
        if low_precision:
            rel = (g.float() - ref).norm() / ref.norm()
            assert rel < 2e-2, f"grad of {label}: relative error {rel:.3g}"
        else:
            atol = 1e-5 * ref.abs().max().item()
            torch.testing.assert_close(g, ref, rtol=1e-4, atol=atol, msg=lambda m, label=label: f"grad of {label}: {m}")
