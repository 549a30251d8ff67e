"""Stage ``fused_ce``: fused linear cross-entropy vs the plain torch reference and Liger-Kernel.

On a GPU: Liger-Kernel's published setting, H=4096, V=128256 (Llama 3), bf16,
B×T = 4K, 8K, 16K and 32K tokens, all in one process. Per path and size: peak
memory beyond the inputs (``max_memory_allocated``; the gradients of hidden and
weight are part of it for every path) and forward+backward time (CUDA events,
the median of ``REPEATS`` runs after a warm-up run). Targets (issue 12): fused
time <= 1.0x the reference, fused memory <= Liger's.

Then a sweep for tuning the Triton kernel on this GPU: the fused path's time at
``TUNE_TOKENS`` tokens for each (``MAX_BLOCK_V``, ``NUM_WARPS``) of
``kernels/cross_entropy/triton.py`` in ``TUNING`` (the shipped values are set by
hand; the sweep says which to ship for the GPU it ran on).

``--cpu-smoke``: the same code at toy size on CPU, wall-clock time, no memory
figure, no Liger (Triton-only); the sweep runs the kernel in the Triton interpreter.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the CPU benchmark's loss paths

from fused_ce import PATHS, _loss_fn, liger_unavailable  # noqa: E402

GPU = dict(tokens=(4096, 8192, 16384, 32768), hidden=4096, vocab=128256, dtype="bfloat16")
SMOKE = dict(tokens=(64, 128), hidden=64, vocab=512, dtype="float32")
REPEATS = 5
TUNING = [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16)]
TUNE_TOKENS = 8192
SMOKE_TUNING = [(128, 4), (512, 4)]  # at SMOKE_TUNE_TOKENS tokens, one timed run: the interpreter is slow
SMOKE_TUNE_TOKENS = 4


def measure(path: str, tokens: int, shape: dict, device: str, impl: str = "auto", repeats: int = REPEATS) -> dict:
    """Loss, peak memory (MiB, CUDA only) and median forward+backward milliseconds of one path."""
    import torch

    dtype = getattr(torch, shape["dtype"])
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(tokens, shape["hidden"], generator=gen, device=device, dtype=dtype).requires_grad_()
    weight = (torch.randn(shape["vocab"], shape["hidden"], generator=gen, device=device, dtype=dtype)
              / shape["hidden"] ** 0.5).requires_grad_()
    labels = torch.randint(0, shape["vocab"], (tokens,), generator=gen, device=device)
    loss_fn = _loss_fn(path) if impl == "auto" else partial(_loss_fn(path), impl=impl)

    def step() -> float:
        hidden.grad = weight.grad = None
        loss = loss_fn(hidden, weight, labels)
        loss.backward()
        return loss

    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    loss = step().item()  # warm-up (Triton compiles here), and the memory peak
    peak = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1) if cuda else None
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    del hidden, weight
    return {"loss": round(loss, 5), "peak_mib": peak, "ms": round(statistics.median(times), 3)}


def tune(shape: dict, device: str, smoke: bool) -> dict:
    """Fused fwd+bwd milliseconds per (MAX_BLOCK_V, NUM_WARPS) of the Triton kernel."""
    from flanforge.kernels.cross_entropy import triton as triton_path

    shipped = (triton_path.MAX_BLOCK_V, triton_path.NUM_WARPS)
    tokens, repeats = (SMOKE_TUNE_TOKENS, 1) if smoke else (TUNE_TOKENS, REPEATS)
    timings = {}
    try:
        for block_v, warps in SMOKE_TUNING if smoke else TUNING:
            triton_path.MAX_BLOCK_V, triton_path.NUM_WARPS = block_v, warps
            timings[f"block_v={block_v},warps={warps}"] = measure("fused", tokens, shape, device, "triton", repeats)["ms"]
    finally:
        triton_path.MAX_BLOCK_V, triton_path.NUM_WARPS = shipped
    return {"tokens": tokens, "shipped": f"block_v={shipped[0]},warps={shipped[1]}", "ms": timings,
            "fastest": min(timings, key=timings.get)}


def run(smoke: bool) -> dict:
    if smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernel module is imported (the sweep)
    import torch

    device = "cpu" if smoke else "cuda"
    shape = SMOKE if smoke else GPU
    reason = liger_unavailable(device)
    paths = [p for p in PATHS if p != "liger" or reason is None]
    results = {}
    for tokens in shape["tokens"]:
        row = {path: measure(path, tokens, shape, device) for path in paths}
        ref, fused = row["reference"], row["fused"]
        row["fused_time_vs_reference"] = round(fused["ms"] / ref["ms"], 3)
        row["fused_loss_error"] = abs(fused["loss"] - ref["loss"])
        if "liger" in row:
            row["liger_time_vs_reference"] = round(row["liger"]["ms"] / ref["ms"], 3)
            row["fused_memory_vs_liger"] = round(fused["peak_mib"] / row["liger"]["peak_mib"], 3)
        results[str(tokens)] = row
        if device == "cuda":
            torch.cuda.empty_cache()
    out = {"shape": {k: v for k, v in shape.items() if k != "tokens"}, "device": device, "by_tokens": results,
           "kernel_tuning": tune(shape, device, smoke)}
    if reason is not None:
        out["liger"] = f"not run: {reason}"
    if smoke:
        out["peak_memory"] = "not measured on CPU (max_memory_allocated is CUDA's)"
    return out
