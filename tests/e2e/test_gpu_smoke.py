"""``bash benchmarks/gpu/run.sh --cpu-smoke``: every GPU stage at toy size on CPU, so the GPU
script cannot rot between GPU runs. It starts one subprocess per stage (pytest for the
two test stages, a one-rank DeepSpeed engine for the training stage)."""

import json
import os
import sys

import pytest

from .conftest import ROOT, run_group

pytestmark = pytest.mark.e2e
STAGES = ["env", "kernel_tests", "attention_tests", "ranks", "fused_ce", "train"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_out")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "OMP_NUM_THREADS": "1"}
    proc = run_group(["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), "--cpu-smoke"], timeout=600, env=env)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, {line["stage"]: line for line in lines}, out


def test_every_stage_reports_one_line_and_passes(smoke):
    proc, stages, out = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(stages) == STAGES
    assert all(s["status"] == "ok" and s["mode"] == "cpu-smoke" for s in stages.values())
    written = [json.loads(line) for line in (out / "gpu_bench.jsonl").read_text().splitlines()]
    assert written == list(stages.values())


def test_the_kernel_and_attention_stages_ran_their_tests(smoke):
    _, stages, _ = smoke
    kernel, attention = stages["kernel_tests"], stages["attention_tests"]
    assert kernel["device"] == "cpu (Triton interpreter)" and kernel["passed"] >= 8 and kernel["failed"] == 0
    assert attention["passed"] >= 1 and attention["failed"] == 0
    assert stages["ranks"]["not_run"].startswith("0 GPU(s)")


def test_the_loss_and_training_stages_have_their_figures(smoke):
    _, stages, _ = smoke
    for row in stages["fused_ce"]["by_tokens"].values():
        assert row["fused_loss_error"] < 1e-4 and row["reference"]["ms"] > 0 and row["fused"]["ms"] > 0
    assert stages["fused_ce"]["liger"].startswith("not run: ")
    tuning = stages["fused_ce"]["kernel_tuning"]  # the Triton kernel's block sizes and warps, in the interpreter
    assert len(tuning["ms"]) == 2 and tuning["fastest"] in tuning["ms"] and min(tuning["ms"].values()) > 0
    from flanforge.model import attention

    variants = stages["train"]["variants"]
    # the fused loss with every implementation, the unfused one with what auto picks for CPU training
    expected = {f"fused_loss+{name}" for name in attention.names()}
    expected.add(f"unfused_loss+{attention.resolve('auto', 'cpu')}")
    assert set(variants) == expected
    assert variants["fused_loss+flex"].startswith("not run: ")  # no FlexAttention backward on CPU
    for name in expected - {"fused_loss+flex"}:
        assert variants[name]["tokens_per_s"] > 0 and 0 < variants[name]["loss"] < 20
        assert variants[name]["mfu"].startswith("not measured")
