"""Run by test_cross_entropy_triton.py in a fresh process with TRITON_INTERPRET=1.

argv: cases file, results file. For each case, runs the fused loss with
impl="triton" and saves the loss and the gradients of hidden, weight and bias.
"""

import os
import sys

import torch

from flanforge.kernels import fused_linear_cross_entropy
from flanforge.kernels.cross_entropy import triton as triton_path

assert os.environ.get("TRITON_INTERPRET") == "1", "must run under the Triton interpreter"

results = {}
for name, case in torch.load(sys.argv[1], weights_only=True).items():
    triton_path.MAX_BLOCK_V = case["max_block_v"]
    leaves = [None if case[k] is None else case[k].clone().requires_grad_() for k in ("hidden", "weight", "bias")]
    loss = fused_linear_cross_entropy(
        leaves[0], leaves[1], case["labels"], bias=leaves[2], impl="triton", **case["options"]
    )
    loss.backward(case["grad_output"])
    results[name] = {"loss": loss.detach(), "grads": [None if t is None else t.grad for t in leaves]}
torch.save(results, sys.argv[2])
