"""The GPU checks, stage by stage: one JSON line per stage (``{"stage": ..., "status": ...}``).

    python benchmarks/gpu/stages.py [--cpu-smoke] [--stage NAME]

Without ``--stage`` every stage runs, each in a fresh subprocess (a crash or a
CUDA out-of-memory in one leaves the others their figures); the lines go to
stdout and, when ``$OUT`` is set, to ``$OUT/gpu_bench.jsonl``. The exit status is
1 when a stage failed. ``--cpu-smoke`` runs every stage at toy size on CPU (the
Triton kernel in its interpreter), so the script is exercised by CI between GPU
runs; ``benchmarks/gpu/run.sh`` is the entry point.

Stages: ``env`` (versions, device, the attention ``auto`` picks), ``kernel_tests``
(tests/kernels/test_cross_entropy_device.py: the Triton kernel compiled on CUDA,
fp32 and bf16), ``attention_tests`` (tests/model/test_packed_isolation.py: packed
== alone for every implementation on the device, flex gradients vs the dense
mask), ``fused_ce`` (``ce.py``) and ``train`` (``e2e.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

STAGES = ("env", "kernel_tests", "attention_tests", "ranks", "fused_ce", "train")
# Safety limits per stage (seconds); the whole GPU run is meant to take under 8 minutes.
TIMEOUT_S = {"env": 120, "kernel_tests": 300, "attention_tests": 300, "ranks": 180, "fused_ce": 300, "train": 480}
NOT_MEASURED = "not measured: no CUDA device"


def env_stage(smoke: bool) -> dict:
    import torch
    import transformers

    from flanforge.model import attention

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "cuda": torch.version.cuda}
    for module in ("triton", "deepspeed", "liger_kernel"):
        try:
            out[module] = __import__(module).__version__
        except (ImportError, AttributeError) as err:
            out[module] = f"unavailable: {err}"
    out["attention_auto_training"] = attention.resolve("auto", device)
    out["attention_unavailable"] = {name: reason for name in attention.names()
                                    if (reason := attention.unavailable_reason(name, device, training=True,
                                                                              dropout=0.0))}
    if not smoke and device != "cuda":
        raise RuntimeError("no CUDA device: run with --cpu-smoke on a machine without a GPU")
    return out


def run_pytest(args: list[str], env: dict[str, str]) -> dict:
    """Run pytest in a subprocess; passed/failed/skipped counts from its JUnit XML, and the failures."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--import-mode=importlib", "-q",
               f"--junitxml={xml}", *args]
        # From the root, as a developer runs it: the folders' own guard keeps `kernels` the PyPI
        # package (flanforge/bare_names.py); PYTHONSAFEPATH=1 is the second guard.
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONSAFEPATH": "1", **env},
                              capture_output=True, text=True)
        if not xml.is_file():
            raise RuntimeError(f"pytest did not run (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    result = {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
              "failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"]}
    if result["failed"] or result["passed"] == 0:
        result["output_tail"] = proc.stdout[-3000:]
        raise StageFailed(result)
    return result


class StageFailed(RuntimeError):
    """A stage ran but its checks failed; carries the figures it has."""

    def __init__(self, figures: dict):
        super().__init__(json.dumps(figures)[:200])
        self.figures = figures


def kernel_tests_stage(smoke: bool) -> dict:
    env = {"FLANFORGE_KERNEL_DEVICE": "cpu", "TRITON_INTERPRET": "1"} if smoke else {}
    return {"device": "cpu (Triton interpreter)" if smoke else "cuda (Triton compiled)",
            **run_pytest(["tests/kernels/test_cross_entropy_device.py", "tests/kernels/test_cross_entropy_fp16.py"], env)}


def ranks_stage(smoke: bool) -> dict:
    """Two ranks on two GPUs (NCCL): each binds its own before its first collective (traced)."""
    import torch

    gpus = 0 if smoke or not torch.cuda.is_available() else torch.cuda.device_count()
    if gpus < 2:
        return {"not_run": f"{gpus} GPU(s): CPU ranks run this check in CI (tests/e2e/test_device_order.py)"}
    return {"gpus": gpus, **run_pytest(["tests/e2e/test_device_order.py"], {})}


def attention_tests_stage(smoke: bool) -> dict:
    # The smoke run keeps to the cross-implementation check (the full file runs in CI anyway).
    selection = ["-k", "agree and cpu and decoder"] if smoke else []
    return run_pytest(["tests/model/test_packed_isolation.py", *selection], {})


def fused_ce_stage(smoke: bool) -> dict:
    import ce

    return ce.run(smoke)


def train_stage(smoke: bool) -> dict:
    import e2e

    return e2e.run(smoke)


def run_stage(name: str, smoke: bool) -> dict:
    start = time.perf_counter()
    record = {"stage": name, "mode": "cpu-smoke" if smoke else "gpu"}
    try:
        record.update(globals()[f"{name}_stage"](smoke))
        record["status"] = "ok"
    except StageFailed as err:
        record.update(err.figures, status="failed")
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def run_all(smoke: bool) -> int:
    out_dir = os.environ.get("OUT")
    sink = Path(out_dir) / "gpu_bench.jsonl" if out_dir else None
    failed = 0
    for name in STAGES:
        cmd = [sys.executable, __file__, "--stage", name] + (["--cpu-smoke"] if smoke else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S[name])
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            record = json.loads(lines[-1]) if proc.returncode == 0 and lines else {
                "stage": name, "status": "failed", "error": (proc.stderr or proc.stdout)[-3000:]}
        except subprocess.TimeoutExpired:
            record = {"stage": name, "status": "failed", "error": f"timed out after {TIMEOUT_S[name]} s"}
        failed += record["status"] != "ok"
        line = json.dumps(record)
        print(line, flush=True)
        if sink is not None:
            with sink.open("a") as f:
                f.write(line + "\n")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every stage at toy size on CPU")
    parser.add_argument("--stage", choices=STAGES, help="run one stage in this process")
    args = parser.parse_args()
    if args.stage is None:
        return run_all(args.cpu_smoke)
    print(json.dumps(run_stage(args.stage, args.cpu_smoke)), flush=True)
    return 0


if __name__ == "__main__":
    # A stage process may hold a process group (``train``): it ends as every rank does.
    from flanforge.launcher.ranks.rank_exit import run_rank

    run_rank(main)
