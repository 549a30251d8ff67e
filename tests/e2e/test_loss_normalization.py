"""The gradient of a global batch does not depend on how it is split over ranks and micro-batches.

Each case starts ``tests/e2e/grad_probe.py`` with DeepSpeed's own launcher on 1 or 2 CPU
ranks and compares the full accumulated gradients (fp32), not parameters after Adam
(whose first step is nearly sign(grad) and would hide scale errors).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.e2e
PROBE = str(Path(__file__).with_name("grad_probe.py"))
SPLITS = [(1, 8, 1), (1, 2, 4), (2, 2, 2)]  # (ranks, micro-batch, accumulation)


def probe(tmp_path, world, mb, ga, stage, norm, port):
    out = tmp_path / f"grads_{world}_{mb}_{ga}_{stage}_{norm}.pt"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1"}
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(world), "--master_port", str(port),
           "--no_local_rank", PROBE, str(out), str(mb), str(ga), str(stage), norm]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("norm, stage", [("global_token", 2), ("sequence", 2), ("global_token", 3)])
def test_gradients_equal_across_splits(tmp_path, norm, stage):
    results = [probe(tmp_path, w, mb, ga, stage, norm, 29600 + i) for i, (w, mb, ga) in enumerate(SPLITS)]
    reference = results[0]
    assert reference and all(g.abs().sum() > 0 for g in reference.values())
    for split, grads in zip(SPLITS[1:], results[1:]):
        assert grads.keys() == reference.keys()
        for name, g in grads.items():
            torch.testing.assert_close(g, reference[name], rtol=1e-5, atol=1e-7, msg=f"{split} {name}")


def test_normalisations_differ(tmp_path):
    """Guards the test above: the two normalisations give different gradients on this batch."""
    a = probe(tmp_path, 1, 8, 1, 2, "global_token", 29610)
    b = probe(tmp_path, 1, 8, 1, 2, "sequence", 29611)
    name = next(iter(a))
    assert not torch.allclose(a[name], b[name], rtol=1e-3)
