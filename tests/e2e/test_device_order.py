"""A rank binds its device before its process group exists and before its first collective: traced in a
real 2-rank ``flanforge train`` (DeepSpeed's launcher; gloo on CPU, NCCL on a machine with 2 GPUs, where
benchmarks/gpu's ``ranks`` stage runs this test), every rank's calls in order."""

import os
from pathlib import Path

import pytest
import torch

from .conftest import run_group, train_command

pytestmark = pytest.mark.e2e

TRACER = Path(__file__).parent / "device_trace"


def test_every_rank_binds_its_device_before_the_first_collective(tmp_path):
    traces = tmp_path / "traces"
    traces.mkdir()
    env = {**os.environ, "PYTHONPATH": str(TRACER), "FLANFORGE_TRACE_DIR": str(traces)}
    proc = run_group(train_command(tmp_path / "run", "train.max_steps=2", "checkpoint.every_steps=2"), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for rank in (0, 1):
        calls = (traces / f"rank{rank}.log").read_text().splitlines()
        assert calls[:3] == ["bind_device", f"device {f'cuda:{rank}' if gpus >= 2 else 'cpu'}", "init_process_group"]
        assert calls.count("bind_device") == 1
        assert {"barrier", "broadcast_object_list", "all_reduce"} <= set(calls)  # the trace saw the collectives
