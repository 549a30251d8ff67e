"""The gradient of a global batch does not depend on how it is split over ranks and micro-batches.

``tests/e2e/grad_probe.py`` runs under DeepSpeed's own launcher, once on 1 CPU rank and
once on 2, each time building a fresh engine per case; the test compares the full
accumulated gradients (fp32), not parameters after Adam (whose first step is nearly
sign(grad) and would hide scale errors).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flanforge.launcher.dist import free_port

pytestmark = pytest.mark.e2e
PROBE = str(Path(__file__).with_name("grad_probe.py"))
MODES = [("global_token", 2), ("sequence", 2), ("global_token", 3)]
SPLITS = {1: [(8, 1), (2, 4)], 2: [(2, 2)]}  # ranks -> (micro-batch, accumulation)


def probe(out: Path, world: int) -> dict:
    cases = ";".join(f"{mb},{ga},{stage},{norm}" for norm, stage in MODES for mb, ga in SPLITS[world])
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1"}
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(world), "--master_port",
           str(free_port()), "--no_local_rank", PROBE, str(out), cases]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out)


@pytest.fixture(scope="module")
def grads(tmp_path_factory):
    root = tmp_path_factory.mktemp("grads")
    return {**probe(root / "one.pt", 1), **probe(root / "two.pt", 2)}


@pytest.mark.parametrize("norm, stage", MODES)
@pytest.mark.parametrize("split", ["1,2,4", "2,2,2"], ids=["1rank-mb2-ga4", "2ranks-mb2-ga2"])
def test_gradients_equal_across_splits(grads, norm, stage, split):
    _, mb, ga = split.split(",")
    reference = grads[f"8,1,{stage},{norm}"]
    assert reference and all(g.abs().sum() > 0 for g in reference.values())
    other = grads[f"{mb},{ga},{stage},{norm}"]
    assert other.keys() == reference.keys()
    for name, g in other.items():
        torch.testing.assert_close(g, reference[name], rtol=1e-5, atol=1e-7, msg=f"{split} {name}")


def test_normalisations_differ(grads):
    """Guards the test above: the two normalisations give different gradients on this batch."""
    a, b = grads["8,1,2,global_token"], grads["8,1,2,sequence"]
    name = next(iter(a))
    assert not torch.allclose(a[name], b[name], rtol=1e-3)
