"""Peak memory and forward+backward time: fused linear cross-entropy vs the plain torch reference.

    python benchmarks/fused_ce.py                       # N=8192 H=1024 V=32000 fp32 on CPU
    python benchmarks/fused_ce.py --n 1024 --repeats 1 --rounds 1  # a quick look

Each path runs in its own fresh subprocess, set up the same way (same seed,
inputs, thread count): allocate hidden (N, H) and weight (V, H) with
requires_grad and the labels, then run forward+backward ``1 + repeats`` times.
This is done ``rounds`` times, the paths alternating (reference, fused,
reference, ...), so that other jobs on a shared machine hit both alike.

Memory: the peak of the first run beyond what the inputs already hold.
  cpu:  the kernel's resident-set high-water mark. After the inputs exist the
        child resets it (``echo 5 > /proc/self/clear_refs``), notes VmRSS, runs,
        and reports VmHWM - VmRSS. This counts every resident byte the run adds
        (tensors, allocator slack, BLAS workspaces), as the OS sees it.
  cuda: torch.cuda.max_memory_allocated() - memory_allocated() before the run.
  The largest peak over the rounds is reported.
Time: wall time of each run after a child's first (warm-up) one; reported are
the minimum over all rounds (``time_s``, the ratio's basis: other jobs can only
add time) and the median (``median_s``); also the least process CPU time of a
run (``cpu_s``, user + system over all threads), which other jobs disturb less
than wall time. The 1-minute load average before and after is reported too.

Liger-Kernel's LigerFusedLinearCrossEntropyFunction runs only with --device cuda
and liger_kernel installed; otherwise it is reported as "not run: <reason>".

The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PATHS = ("reference", "fused", "liger")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _loss_fn(path: str):
    """(hidden, weight, labels) -> scalar mean loss, for one path."""
    import torch.nn.functional as F

    if path == "reference":
        return lambda hidden, weight, labels: F.cross_entropy(hidden @ weight.T, labels)
    if path == "fused":
        from flanforge.kernels import fused_linear_cross_entropy

        return fused_linear_cross_entropy
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    def liger(hidden, weight, labels):
        out = LigerFusedLinearCrossEntropyFunction.apply(hidden, weight, labels)
        return out[0] if isinstance(out, tuple) else out  # newer releases also return the z-loss

    return liger


def child(args) -> dict:
    """Measure one path in this process; returns its figures."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loss_fn = _loss_fn(args.path)
    gen = torch.Generator().manual_seed(0)
    hidden = (torch.randn(args.n, args.h, generator=gen) * 0.5).to(device).requires_grad_()
    weight = (torch.randn(args.v, args.h, generator=gen) / args.h**0.5).to(device).requires_grad_()
    labels = torch.randint(0, args.v, (args.n,), generator=gen).to(device)

    def run():
        hidden.grad = weight.grad = None
        loss = loss_fn(hidden, weight, labels)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = run()
        peak_bytes = torch.cuda.max_memory_allocated() - base
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status_kib("VmRSS")
        loss = run()
        peak_bytes = (_status_kib("VmHWM") - base) * 1024

    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        times.append(round(time.perf_counter() - start, 3))
        cpu_times.append(round(time.process_time() - cpu_start, 3))
    return {"loss": loss, "peak_mib": round(peak_bytes / 2**20, 1), "times_s": times, "cpu_s": cpu_times}


def liger_unavailable(device: str) -> str | None:
    """Why Liger-Kernel cannot run here, or None if it can."""
    if device != "cuda":
        return f"Liger-Kernel's fused linear cross-entropy is Triton-only and needs a CUDA device (this run: {device})"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger_kernel is not installed"
    return None


def run_child(path: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", path]
    cmd += ["--n", str(args.n), "--h", str(args.h), "--v", str(args.v)]
    cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats), "--device", args.device]  # no --rounds
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{path} child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="tokens")
    parser.add_argument("--h", type=int, default=1024, help="hidden size")
    parser.add_argument("--v", type=int, default=32000, help="vocabulary size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for every path")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up run")
    parser.add_argument("--rounds", type=int, default=3, help="fresh children per path, alternating")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        args.path = args.child
        print(json.dumps(child(args)))
        return

    results = {"n": args.n, "h": args.h, "v": args.v, "dtype": "float32", "device": args.device}
    results["threads"] = args.threads
    # Other jobs on a shared machine slow both paths; the load averages say how busy it was.
    results["loadavg_before"] = os.getloadavg()[0]
    reason = liger_unavailable(args.device)
    paths = [path for path in PATHS if path != "liger" or reason is None]
    runs = {path: [] for path in paths}
    for _ in range(args.rounds):
        for path in paths:
            runs[path].append(run_child(path, args))
            print(f"{path:>9} run: {runs[path][-1]}", flush=True)
    for path, children in runs.items():
        times = [t for c in children for t in c["times_s"]]
        results[path] = {
            "loss": children[0]["loss"],
            "peak_mib": max(c["peak_mib"] for c in children),
            "time_s": min(times),
            "median_s": round(statistics.median(times), 3),
            "cpu_s": min(t for c in children for t in c["cpu_s"]),
        }
    if reason is not None:
        results["liger"] = f"not run: {reason}"
    ref, fused = results["reference"], results["fused"]
    results["time_ratio"] = round(fused["time_s"] / ref["time_s"], 3)
    results["median_time_ratio"] = round(fused["median_s"] / ref["median_s"], 3)
    results["cpu_time_ratio"] = round(fused["cpu_s"] / ref["cpu_s"], 3)
    results["memory_ratio"] = round(fused["peak_mib"] / ref["peak_mib"], 4)
    results["loadavg_after"] = os.getloadavg()[0]
    for path in PATHS:
        print(f"{path:>9}: {results[path]}")
    print(
        f"fused/reference: time {results['time_ratio']}x (median {results['median_time_ratio']}x, "
        f"cpu {results['cpu_time_ratio']}x), "
        f"peak memory {results['memory_ratio']}x"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
