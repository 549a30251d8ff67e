"""fp16 with the fused loss: its gradients survive a realistic per-token weight (1/tokens of a global
batch) before the loss scale is applied (backward), as the unfused fp16 loss's do. Measured against an
fp64 reference of the same fp16 inputs: the fraction of LM-head gradient entries lost to zero, and the
relative error of the hidden and weight gradients."""

import pytest
import torch
import torch.nn.functional as F

from flanforge.kernels import fused_linear_cross_entropy

N, H, V = 256, 64, 32000
TOKEN_WEIGHT = 1.0 / 4096  # one token's share of a 4,096-token global batch mean
LOSS_SCALE = 2.0**16  # DeepSpeed's initial fp16 loss scale
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # on a GPU: the Triton path too


def inputs(device="cpu"):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(N, H, generator=g).half()
    weight = (torch.randn(V, H, generator=g) * 0.05).half()
    labels = torch.randint(0, V, (N,), generator=g)
    return hidden.to(device), weight.to(device), labels.to(device)


def grads(loss_fn, dtype, hidden, weight, labels):
    h = hidden.to(dtype).clone().requires_grad_()
    w = weight.to(dtype).clone().requires_grad_()
    scale = torch.tensor(LOSS_SCALE, dtype=torch.float32 if dtype == torch.half else dtype, device=h.device)
    loss_fn(h, w, labels).backward(scale)
    return h.grad.double().cpu() / LOSS_SCALE, w.grad.double().cpu() / LOSS_SCALE


def fused(h, w, labels):
    weights = torch.full(labels.shape, TOKEN_WEIGHT, dtype=torch.float32, device=h.device)
    return fused_linear_cross_entropy(h, w, labels, reduction="sum", token_weights=weights)


def unfused(h, w, labels):
    """As under autocast: fp16 logits, the softmax and loss in fp32 (their gradient rounded back to fp16)."""
    logits = h @ w.T
    return (F.cross_entropy(logits.float(), labels, reduction="none") * TOKEN_WEIGHT).sum()


def errors(got, ref):
    (gh, gw), (rh, rw) = got, ref
    zeroed = ((gw == 0) & (rw != 0)).sum().item() / (rw != 0).sum().item()
    return zeroed, ((gh - rh).norm() / rh.norm()).item(), ((gw - rw).norm() / rw.norm()).item()


@pytest.fixture(scope="module", params=DEVICES)
def measured(request):
    hidden, weight, labels = inputs(request.param)
    reference = grads(unfused, torch.float64, hidden.cpu(), weight.cpu(), labels.cpu())
    return {"fused": errors(grads(fused, torch.half, hidden, weight, labels), reference),
            "unfused": errors(grads(unfused, torch.half, hidden, weight, labels), reference)}


def test_fused_fp16_gradients_are_as_good_as_the_unfused_ones(measured):
    fused_zeroed, fused_hidden, fused_weight = measured["fused"]
    unfused_zeroed, unfused_hidden, unfused_weight = measured["unfused"]
    assert fused_zeroed <= unfused_zeroed + 0.01, measured
    assert fused_hidden <= 2 * unfused_hidden + 1e-3, measured
    assert fused_weight <= 2 * unfused_weight + 1e-3, measured


def test_the_gradients_come_back_in_the_inputs_dtype():
    hidden, weight, labels = inputs()
    h, w = hidden[:8].clone().requires_grad_(), weight[:100].clone().requires_grad_()
    fused(h, w, labels[:8] % 100).backward()
    assert h.grad.dtype == torch.half and w.grad.dtype == torch.half
