"""Per-chunk cross-entropy loss and logits gradient in plain torch (runs on any device).

The Triton kernel in ``triton.py`` computes exactly the same thing; the host loop in
``function.py`` calls one or the other for each chunk of logits.

With z = softcap(logits), p = softmax(z), lse = logsumexp(z), eps = label_smoothing:

    loss    = lse - (1 - eps) * z[y] - eps / V * sum(z) + z_loss * lse**2
    dloss/dz = p * (1 + 2 * z_loss * lse) - eps / V - (1 - eps) * onehot(y)
    dz/dlogits = 1 - (z / softcap)**2            (1 without a softcap)

and both are zero for rows whose label is ignore_index.
"""

from __future__ import annotations

import torch

from .options import CrossEntropyOptions


def loss_and_grad_(
    logits: torch.Tensor,
    labels: torch.Tensor,
    grad_scale: torch.Tensor,
    loss_out: torch.Tensor,
    options: CrossEntropyOptions,
) -> None:
    """Write each row's loss into ``loss_out`` and overwrite ``logits`` with
    ``grad_scale[:, None] * dloss/dlogits``.

    logits (R, V) in the input dtype; labels (R,) int64; grad_scale (R,) and
    loss_out (R,) in the accumulation dtype (fp32, or fp64 for fp64 inputs).
    """
    vocab = logits.shape[1]
    eps = options.label_smoothing
    # Low-precision logits are upcast once per chunk; fp32/fp64 ones are worked on in place.
    x = logits.to(loss_out.dtype)  # (R, V)
    valid = labels != options.ignore_index  # (R,)
    target = torch.where(valid, labels, 0).unsqueeze(1)  # (R, 1); ignored rows read column 0, harmlessly

    cap_grad = None
    if options.softcap is not None:
        x.div_(options.softcap).tanh_()
        cap_grad = 1.0 - x * x  # (R, V) dz/dlogits, needed after x is overwritten
        x.mul_(options.softcap)

    z_target = x.gather(1, target)  # (R, 1)
    z_sum = x.sum(1, keepdim=True) if eps > 0.0 else None  # (R, 1)
    z_max = x.amax(1, keepdim=True)  # (R, 1)
    x.sub_(z_max).exp_()  # exp(z - max), stable
    exp_sum = x.sum(1, keepdim=True)  # (R, 1)
    lse = z_max + exp_sum.log()  # (R, 1)

    loss = lse - (1.0 - eps) * z_target + options.z_loss * lse * lse
    if z_sum is not None:
        loss -= (eps / vocab) * z_sum
    loss_out.copy_(loss.squeeze(1).masked_fill_(~valid, 0.0))

    # Zero scale on ignored rows zeroes their gradient in the passes below.
    row_scale = (grad_scale * valid).unsqueeze(1)  # (R, 1)
    x.mul_(row_scale * (1.0 + 2.0 * options.z_loss * lse) / exp_sum)  # scaled p * (1 + 2 z_loss lse)
    if eps > 0.0:
        x.sub_(row_scale * (eps / vocab))
    x.scatter_add_(1, target, row_scale * -(1.0 - eps))
    if cap_grad is not None:
        x.mul_(cap_grad)
    if x is not logits:
        logits.copy_(x)
