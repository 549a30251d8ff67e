"""Host side of the fused linear cross-entropy: input checks, the chunk loop and
the ``torch.autograd.Function``.

The loop computes ``hidden @ weight.T + bias`` one chunk of tokens at a time into
a single reused buffer, lets the per-chunk op (torch or Triton) turn it into the
loss and d(loss)/d(logits) in place, and immediately folds that into the
gradients of hidden, weight and bias. So the full (tokens, vocab) logits never
exist, and for reduction "mean"/"sum" the gradients are ready after the forward
pass; backward only scales them by grad_output (Liger-Kernel's scheme).

Per-token ``token_weights`` scale each token's loss before the reduction, so a
weighted sum (a training step's share of a global-batch mean, say) still gets
its gradients in the forward pass; ``return_token_losses`` hands back the
unweighted per-token losses as well, detached, for logging.

For reduction "none" the gradient depends on the per-token grad_output, which is
unknown in forward, so forward computes only the losses and backward runs the
loop once more with grad_output as the per-token scale. That costs one extra
logits matmul but keeps no gradient alive between forward and backward: when
the per-token scale is known in advance, pass it as ``token_weights`` with
reduction "sum" instead.
"""

from __future__ import annotations

import math
import os

import torch

from . import torch_chunked
from .options import CrossEntropyOptions

# Upper bound for one chunk of logits on a CPU, counted in fp32 (the dtype the loss math uses).
LOGITS_CHUNK_BYTES = 64 * 2**20


def chunk_rows(n_rows: int, vocab: int, hidden: int, chunk_size: int | None, device_type: str = "cpu") -> int:
    """Tokens per chunk: ``chunk_size`` if given; on a GPU, chunks whose logits are about as large as the
    hidden states (ceil(V / H) chunks, rounded to a power of two rows, as Liger-Kernel sizes them): every
    chunk re-reads the (V, H) weight and adds into its gradient, so few large chunks keep that traffic
    small at large vocabularies; on a CPU, as many as fit the logits budget."""
    if chunk_size is not None:
        rows = chunk_size
    elif device_type == "cuda":
        rows = 1 << max(0, math.ceil(math.log2(math.ceil(n_rows / math.ceil(vocab / hidden)))))
    else:
        rows = LOGITS_CHUNK_BYTES // (4 * vocab)
    return max(1, min(rows, n_rows))


def select_chunk_op(impl: str, device: torch.device):
    """The one place where the per-chunk path is chosen: Triton for CUDA tensors
    when it imports (``impl="auto"``), torch otherwise, or as forced by ``impl``."""
    if impl == "torch" or (impl == "auto" and device.type != "cuda"):
        return torch_chunked.loss_and_grad_
    if impl == "auto":
        try:
            from . import triton as triton_path
        except ImportError:
            return torch_chunked.loss_and_grad_
        return triton_path.loss_and_grad_
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"impl='triton' on {device.type} tensors runs only in the Triton interpreter: set "
            "TRITON_INTERPRET=1 before flanforge.kernels.cross_entropy.triton is first imported"
        )
    from . import triton as triton_path  # raises ImportError if triton is not installed

    return triton_path.loss_and_grad_


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half-precision inputs, else the input dtype (fp32 or fp64)."""
    return torch.promote_types(dtype, torch.float32)


def check_inputs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Raise ValueError naming the tensors and their shapes on any shape, dtype or device mismatch."""
    hs, ws, ls = tuple(hidden.shape), tuple(weight.shape), tuple(labels.shape)
    if hidden.dim() not in (2, 3):
        raise ValueError(f"hidden {hs} must be (N, H) or (B, T, H)")
    if weight.dim() != 2:
        raise ValueError(f"weight {ws} must be (V, H)")
    if hs[-1] != ws[1]:
        raise ValueError(f"hidden {hs} and weight {ws}: hidden size {hs[-1]} != {ws[1]}")
    if ls != hs[:-1]:
        raise ValueError(f"labels {ls} and hidden {hs}: labels must have shape {hs[:-1]}")
    if bias is not None and tuple(bias.shape) != ws[:1]:
        raise ValueError(f"bias {tuple(bias.shape)} and weight {ws}: bias must have shape {ws[:1]}")
    if not hidden.dtype.is_floating_point:
        raise ValueError(f"hidden {hs} has dtype {hidden.dtype}; it must be floating point")
    if weight.dtype != hidden.dtype:
        raise ValueError(f"hidden {hs} is {hidden.dtype} but weight {ws} is {weight.dtype}")
    if bias is not None and bias.dtype != hidden.dtype:
        raise ValueError(f"hidden {hs} is {hidden.dtype} but bias {tuple(bias.shape)} is {bias.dtype}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels {ls} has dtype {labels.dtype}; it must be an integer dtype")
    named = [("hidden", hidden), ("weight", weight), ("labels", labels)] + ([("bias", bias)] if bias is not None else [])
    if len({t.device for _, t in named}) > 1:
        where = ", ".join(f"{name} {tuple(t.shape)} on {t.device}" for name, t in named)
        raise ValueError(f"tensors must be on one device: {where}")


def count_valid_labels(labels: torch.Tensor, vocab: int, ignore_index: int) -> int:
    """Number of labels that are not ignore_index; ValueError if any other label is outside [0, vocab).

    One min/max reduction and a single device-to-host copy.
    """
    if labels.numel() == 0:
        return 0
    valid = labels != ignore_index
    low, high = torch.where(valid, labels, 0).aminmax()
    low, high, n_valid = torch.stack([low, high, valid.sum()]).tolist()
    if low < 0 or high >= vocab:
        raise ValueError(
            f"labels {tuple(labels.shape)} hold values outside [0, {vocab}) that are not "
            f"ignore_index={ignore_index} (min {low}, max {high})"
        )
    return n_valid


def chunked_loss_and_grads(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    grad_scale: torch.Tensor,
    options: CrossEntropyOptions,
    need_grads: tuple[bool, bool, bool],
):
    """Per-token losses and the gradients of (hidden, weight, bias) scaled per token by ``grad_scale``.

    hidden (N, H), weight (V, H), bias (V,) or None, labels (N,) int64,
    grad_scale (N,) in the accumulation dtype. Returns loss (N,) in the
    accumulation dtype and a (grad_hidden, grad_weight, grad_bias) tuple in the
    input dtype (fp16 inputs: fp32, see below), with None where ``need_grads`` is False.
    """
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    acc_dtype = accumulation_dtype(hidden.dtype)
    chunk_op = select_chunk_op(options.impl, hidden.device)
    rows = chunk_rows(n_rows, vocab, hidden.shape[1], options.chunk_size, hidden.device.type)
    need_hidden, need_weight, need_bias = need_grads
    fp16 = hidden.dtype == torch.float16
    # fp16: d(loss)/d(logits) scaled by a token weight such as 1/tokens underflows before any loss scale
    # is applied, so it is computed ``headroom`` times larger (a power of two) and the matmuls' results
    # are brought back in fp32, which the gradients then stay in: exact scaling, no underflow.
    headroom = fp16_headroom(grad_scale) if fp16 and any(need_grads) else None
    if headroom is not None:
        grad_scale = grad_scale * headroom
        unscale = headroom.reciprocal()

    logits_buffer = hidden.new_empty(rows, vocab)  # (rows, V), the only logits alive
    loss = torch.empty(n_rows, dtype=acc_dtype, device=hidden.device)
    grad_hidden = None
    if need_hidden:
        grad_hidden = torch.empty(hidden.shape, dtype=acc_dtype if fp16 else hidden.dtype, device=hidden.device)
    grad_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_weight else None
    grad_bias = torch.zeros(vocab, dtype=acc_dtype, device=weight.device) if need_bias else None
    # Half-precision matmuls cannot add into an fp32 buffer: each chunk's weight
    # gradient lands here first; at the end it receives the fp32 sum, cast back (not for fp16).
    weight_chunk_grad = torch.empty_like(weight) if need_weight and acc_dtype != weight.dtype else None
    hidden_chunk_grad = hidden.new_empty(rows, hidden.shape[1]) if need_hidden and fp16 else None

    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        h = hidden[start:stop]  # (R, H)
        logits = logits_buffer[: stop - start]  # (R, V)
        if bias is None:
            torch.mm(h, weight.T, out=logits)
        else:
            torch.addmm(bias, h, weight.T, out=logits)
        chunk_op(logits, labels[start:stop], grad_scale[start:stop], loss[start:stop], options)
        grad_logits = logits  # (R, V), overwritten in place by chunk_op
        if hidden_chunk_grad is not None:
            chunk = torch.mm(grad_logits, weight, out=hidden_chunk_grad[: stop - start])  # (R, H)
            grad_hidden[start:stop].copy_(chunk).mul_(unscale)  # the unscaling in fp32
        elif need_hidden:
            torch.mm(grad_logits, weight, out=grad_hidden[start:stop])  # (R, H)
        if weight_chunk_grad is not None:
            torch.mm(grad_logits.T, h, out=weight_chunk_grad)  # (V, H)
            if headroom is None:
                grad_weight.add_(weight_chunk_grad)
            else:
                grad_weight.addcmul_(weight_chunk_grad, unscale)
        elif need_weight:
            grad_weight.addmm_(grad_logits.T, h)  # (V, H)
        if need_bias:
            grad_bias.add_(grad_logits.sum(0, dtype=acc_dtype) if headroom is None
                           else grad_logits.sum(0, dtype=acc_dtype) * unscale)  # (V,)

    if weight_chunk_grad is not None and not fp16:
        grad_weight = weight_chunk_grad.copy_(grad_weight)
    if grad_bias is not None and not fp16:
        grad_bias = grad_bias.to(bias.dtype)
    return loss, (grad_hidden, grad_weight, grad_bias)


def fp16_headroom(grad_scale: torch.Tensor) -> torch.Tensor:
    """The power of two that brings the largest per-token gradient factor to 1 (at least 1, at most
    2**24), computed on the device: no host sync."""
    peak = grad_scale.abs().amax().clamp_min(2.0**-126)
    return torch.exp2(torch.floor(-torch.log2(peak))).clamp(1.0, 2.0**24)


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """Autograd for ``loss(hidden @ weight.T + bias, labels)`` on flattened tokens.

    Returns the (weighted) loss, reduced or per token, and the unweighted
    per-token losses (not differentiable). For "mean"/"sum" the gradients
    computed in forward are scaled in place by grad_output and handed to
    autograd without a copy. A second backward through the same graph
    (retain_graph=True) finds them gone and recomputes them, as "none" always does.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, token_weights, options: CrossEntropyOptions, n_valid: int,
                grad_enabled: bool):
        # hidden (N, H), weight (V, H), bias (V,) or None, labels (N,) int64 with
        # n_valid of them not ignored, token_weights (N,) in the accumulation dtype or None.
        # "mean" over zero valid tokens is 0 with zero gradients rather than 0/0.
        base_scale = 1.0 / max(n_valid, 1) if options.reduction == "mean" else 1.0
        acc_dtype = accumulation_dtype(hidden.dtype)
        # grad_enabled is the caller's grad mode (grad mode is always off in here):
        # under torch.no_grad() no gradient matmul is run.
        grads_now = grad_enabled and options.reduction != "none"
        need_grads = tuple(grads_now and need for need in ctx.needs_input_grad[:3])
        grad_scale = _grad_scale(base_scale, token_weights, hidden.shape[0], acc_dtype, hidden.device)
        loss, grads = chunked_loss_and_grads(hidden, weight, bias, labels, grad_scale, options, need_grads)

        ctx.save_for_backward(hidden, weight, bias, labels, token_weights)
        ctx.options = options
        ctx.base_scale = base_scale
        ctx.grads = grads if grads_now else None
        weighted = loss.clone() if token_weights is None else loss * token_weights  # (N,), a tensor apart from loss
        ctx.mark_non_differentiable(loss)
        if options.reduction == "none":
            return weighted, loss
        return weighted.sum() * base_scale, loss

    @staticmethod
    def backward(ctx, grad_output, _grad_token_losses):
        grads, ctx.grads = ctx.grads, None  # drop our reference so autograd can take the tensors as they are
        if grads is None:
            hidden, weight, bias, labels, token_weights = ctx.saved_tensors
            acc_dtype = accumulation_dtype(hidden.dtype)
            grad_scale = _grad_scale(ctx.base_scale, token_weights, hidden.shape[0], acc_dtype, hidden.device)
            grad_scale = grad_scale * grad_output.to(acc_dtype)  # (N,)
            _, grads = chunked_loss_and_grads(
                hidden, weight, bias, labels, grad_scale, ctx.options, tuple(ctx.needs_input_grad[:3])
            )
        else:
            for grad in grads:
                if grad is not None:
                    grad.mul_(grad_output)
        hidden_dtype = ctx.saved_tensors[0].dtype
        grads = tuple(g.to(hidden_dtype) if g is not None and g.dtype != hidden_dtype else g for g in grads)
        return (*grads, None, None, None, None, None)


def _grad_scale(base_scale: float, token_weights: torch.Tensor | None, n_rows: int, dtype, device) -> torch.Tensor:
    """Each token's factor on d(loss)/d(logits): the reduction's scale times its weight, (N,)."""
    if token_weights is None:
        return torch.full((1,), base_scale, dtype=dtype, device=device).expand(n_rows)
    return token_weights * base_scale


def check_token_weights(token_weights: torch.Tensor | None, labels: torch.Tensor, hidden: torch.Tensor) -> None:
    if token_weights is None:
        return
    if tuple(token_weights.shape) != tuple(labels.shape):
        raise ValueError(f"token_weights {tuple(token_weights.shape)} and labels {tuple(labels.shape)}: "
                         "token_weights must have the labels' shape")
    if not token_weights.dtype.is_floating_point:
        raise ValueError(f"token_weights {tuple(token_weights.shape)} has dtype {token_weights.dtype}; "
                         "it must be floating point")
    if token_weights.device != hidden.device:
        raise ValueError(f"token_weights on {token_weights.device} but hidden on {hidden.device}: "
                         "tensors must be on one device")


def fused_linear_cross_entropy_apply(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None,
    options: CrossEntropyOptions,
    token_weights: torch.Tensor | None = None,
    check_labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the tensors (and labels' range, unless ``check_labels`` is False and the reduction does not
    need the count of valid labels), flatten the tokens, run the Function.

    Returns ``(loss, token_losses)``: the loss as the reduction asks (per token
    in labels' shape for "none"), and the unweighted per-token losses in labels' shape.
    """
    check_inputs(hidden, weight, labels, bias)
    check_token_weights(token_weights, labels, hidden)
    n_valid = 0  # only "mean" divides by it
    if check_labels or options.reduction == "mean":
        n_valid = count_valid_labels(labels, weight.shape[0], options.ignore_index)
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # (N, H)
    flat_labels = labels.reshape(-1).to(torch.int64).contiguous()  # (N,)
    flat_weights = None
    if token_weights is not None:
        flat_weights = token_weights.detach().reshape(-1).to(accumulation_dtype(hidden.dtype)).contiguous()  # (N,)
    loss, token_losses = FusedLinearCrossEntropyFunction.apply(
        flat_hidden, weight, bias, flat_labels, flat_weights, options, n_valid, torch.is_grad_enabled()
    )
    if options.reduction == "none":
        loss = loss.view(labels.shape)
    return loss, token_losses.view(labels.shape)
