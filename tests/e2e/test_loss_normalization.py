"""The gradient of a global batch does not depend on how it is split over ranks and micro-batches.

``tests/e2e/grad_probe.py`` runs under DeepSpeed's own launcher, once on 1 CPU rank and
once on 2, each time building a fresh engine per case; the test compares the full
accumulated gradients (fp32), not parameters after Adam (whose first step is nearly
sign(grad) and would hide scale errors).
"""

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.e2e
PROBE = str(Path(__file__).with_name("grad_probe.py"))
MODES = [("global_token", 2), ("sequence", 2), ("global_token", 3)]
SPLITS = {1: [(8, 1), (2, 4)], 2: [(2, 2)]}  # ranks -> (micro-batch, accumulation)


def gradients(run_probe, out: Path, world: int) -> dict:
    cases = ";".join(f"{mb},{ga},{stage},{norm}" for norm, stage in MODES for mb, ga in SPLITS[world])
    run_probe(PROBE, world, out, cases)
    return torch.load(out)


@pytest.fixture(scope="module")
def grads(tmp_path_factory, run_probe):
    root = tmp_path_factory.mktemp("grads")
    return {**gradients(run_probe, root / "one.pt", 1), **gradients(run_probe, root / "two.pt", 2)}


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
