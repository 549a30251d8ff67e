"""Per-chunk cross-entropy loss and logits gradient as a Triton kernel.

Same contract and formulas as ``torch_chunked.loss_and_grad_``. One program per
row: a first sweep over the vocabulary in BLOCK_V blocks keeps an online
max / sum-of-exp (and the sum of logits for label smoothing), a second sweep
writes the gradient over the logits in place. Math is in fp32 whatever the
logits dtype.

Imported only when the Triton path is chosen (``function.select_chunk_op``): on
CPU the kernel runs only under the interpreter, and TRITON_INTERPRET=1 must be
in the environment before this module defines the kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .options import CrossEntropyOptions

# A vocabulary block of fp32 per program; larger vocabularies loop over blocks.
MAX_BLOCK_V = 4096
NUM_WARPS = 8


@triton.jit
def _tanh(x):
    # Portable tanh (no libdevice, works in the interpreter); saturates to +-1 for large |x|.
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _loss_and_grad_kernel(
    logits_ptr,
    logits_row_stride,
    labels_ptr,
    grad_scale_ptr,
    grad_scale_stride,
    loss_ptr,
    vocab,
    ignore_index,
    label_smoothing,
    z_loss,
    softcap,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_row_stride
    label = tl.load(labels_ptr + row)
    cols = tl.arange(0, BLOCK_V)

    if label == ignore_index:
        for start in range(0, vocab, BLOCK_V):
            tl.store(row_ptr + start + cols, tl.zeros([BLOCK_V], tl.float32), mask=start + cols < vocab)
        tl.store(loss_ptr + row, 0.0)
        return

    # Sweep 1: online logsumexp of z = softcap(logits), and sum(z) for label smoothing.
    z_max = float("-inf")
    exp_sum = 0.0
    z_sum = 0.0
    for start in range(0, vocab, BLOCK_V):
        mask = start + cols < vocab
        z = tl.load(row_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            z = softcap * _tanh(z / softcap)
        z_sum += tl.sum(tl.where(mask, z, 0.0), axis=0)
        z = tl.where(mask, z, float("-inf"))
        new_max = tl.maximum(z_max, tl.max(z, axis=0))
        exp_sum = exp_sum * tl.exp(z_max - new_max) + tl.sum(tl.exp(z - new_max), axis=0)
        z_max = new_max
    lse = z_max + tl.log(exp_sum)

    z_target = tl.load(row_ptr + label).to(tl.float32)
    if HAS_SOFTCAP:
        z_target = softcap * _tanh(z_target / softcap)
    loss = lse - (1.0 - label_smoothing) * z_target - label_smoothing / vocab * z_sum + z_loss * lse * lse
    tl.store(loss_ptr + row, loss)

    # Sweep 2: gradient, written over the logits (read before they are overwritten).
    scale = tl.load(grad_scale_ptr + row * grad_scale_stride).to(tl.float32)
    p_coef = 1.0 + 2.0 * z_loss * lse
    for start in range(0, vocab, BLOCK_V):
        mask = start + cols < vocab
        x = tl.load(row_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            t = _tanh(x / softcap)
            z = softcap * t
        else:
            z = x
        grad = tl.exp(z - lse) * p_coef - label_smoothing / vocab
        grad = tl.where(start + cols == label, grad - (1.0 - label_smoothing), grad)
        if HAS_SOFTCAP:
            grad = grad * (1.0 - t * t)
        tl.store(row_ptr + start + cols, (grad * scale).to(logits_ptr.dtype.element_ty), mask=mask)


def loss_and_grad_(
    logits: torch.Tensor,
    labels: torch.Tensor,
    grad_scale: torch.Tensor,
    loss_out: torch.Tensor,
    options: CrossEntropyOptions,
) -> None:
    """Write each row's loss into ``loss_out`` and overwrite ``logits`` with
    ``grad_scale[:, None] * dloss/dlogits``.

    logits (R, V) with unit column stride; labels (R,) int64 contiguous;
    grad_scale (R,) any stride (0 for a shared scale); loss_out (R,) contiguous.
    """
    rows, vocab = logits.shape
    if rows == 0:
        return
    _loss_and_grad_kernel[(rows,)](
        logits,
        logits.stride(0),
        labels,
        grad_scale,
        grad_scale.stride(0),
        loss_out,
        vocab,
        options.ignore_index,
        options.label_smoothing,
        options.z_loss,
        options.softcap or 1.0,  # unused without a softcap
        HAS_SOFTCAP=options.softcap is not None,
        BLOCK_V=min(MAX_BLOCK_V, triton.next_power_of_2(vocab)),
        num_warps=NUM_WARPS,
    )
