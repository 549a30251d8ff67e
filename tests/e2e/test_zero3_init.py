"""Under ZeRO-3 a from-scratch model is built partitioned over the ranks (never whole on one), with the
same weights as without ZeRO-3: ``tests/e2e/zero3_init_probe.py`` on 2 CPU ranks."""

from pathlib import Path

import pytest
import torch

from flanforge.model.tokenizer import train_tokenizer

pytestmark = pytest.mark.e2e
PROBE = str(Path(__file__).with_name("zero3_init_probe.py"))
TEXTS = [f"Sort the numbers {i} {i * 7 % 13} {i * 3}. Answer: the river stone cloud tiger {i}" for i in range(400)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, run_probe):
    root = tmp_path_factory.mktemp("zero3_init")
    train_tokenizer(TEXTS, root / "spm", vocab_size=500)
    run_probe(PROBE, 2, root / "out.pt", root / "spm")
    return torch.load(root / "out.pt")


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_zero3_builds_the_same_weights(built, arch):
    plain, zero3 = built[arch]["plain"], built[arch]["zero3"]
    assert plain.keys() == zero3.keys()
    for name, tensor in plain.items():
        torch.testing.assert_close(zero3[name], tensor, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_zero3_never_holds_the_whole_model_on_one_rank(built, arch):
    local, total = built[arch]["local"], built[arch]["total"]
    assert total > 1_000_000
    # Each rank holds its half (DeepSpeed pads each parameter's partition to the world size).
    assert sum(local) >= total
    assert all(held <= total / 2 + 2 * 1024 for held in local), (local, total)
