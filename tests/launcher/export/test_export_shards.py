"""Sharded safetensors as export writes them: the shard plan, the layout ``from_pretrained`` reads,
and the host memory a streamed export takes (measured in a child process)."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from flanforge.errors import UserError
from flanforge.launcher.export import run as export
from flanforge.launcher.export.shards import INDEX_FILE, plan_shards, shard_names, write_shards


def test_shards_close_before_the_size_and_a_large_tensor_stands_alone():
    sizes = {"a": 10, "b": 15, "big": 60, "c": 5, "d": 20, "e": 1}
    assert plan_shards(sizes, 25) == [["a", "b"], ["big"], ["c", "d"], ["e"]]
    assert plan_shards({"big": 60}, 25) == [["big"]]
    assert plan_shards(sizes, 10**6) == [list(sizes)]
    assert shard_names(1) == ["model.safetensors"]
    assert shard_names(3)[2] == "model-00003-of-00003.safetensors"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         vocab_size=300, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shards_and_index_load_with_from_pretrained(tiny, tmp_path, dtype):
    state = tiny.state_dict()
    element = torch.tensor([], dtype=dtype).element_size()
    sizes = {name: t.numel() * element for name, t in state.items()}
    embedding = sizes["model.embed_tokens.weight"]
    shapes = {name: tuple(t.shape) for name, t in state.items()}
    files = write_shards(tmp_path, shapes, lambda name: state[name], dtype, max_bytes=embedding // 2)
    tiny.config.save_pretrained(tmp_path)

    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert set(index["weight_map"]) == set(state) and index["metadata"]["total_size"] == sum(sizes.values())
    assert sorted(set(index["weight_map"].values())) == sorted(files) and len(files) > 3
    alone = index["weight_map"]["model.embed_tokens.weight"]  # larger than the shard size: a file of its own
    assert [n for n, f in index["weight_map"].items() if f == alone] == ["model.embed_tokens.weight"]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True, dtype=dtype).eval()
    assert all(torch.equal(loaded.state_dict()[name], t.to(dtype)) for name, t in state.items())
    if dtype == torch.float32:
        ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, tiny(ids).logits)


def test_disk_without_room_is_refused_with_the_bytes_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(export.shutil, "disk_usage", lambda path: type("U", (), {"free": 999})())
    with pytest.raises(UserError, match=rf"--out {tmp_path / 'out'}: the export needs 1000 bytes .*has 999 free"):
        export.check_disk(tmp_path / "out", 1000, 10)
    export.check_disk(tmp_path / "out", 999, 10)


# Writes 32 tensors of 4M fp32 elements (512 MiB) as bf16 shards of 32 MiB, materialising each
# when its bytes are written; prints the peak RSS growth (bytes) over the RSS before the export.
_CHILD = """
import resource, sys, torch
from pathlib import Path
from flanforge.launcher.export.shards import write_shards
torch.set_num_threads(1)
names = [f"t{i}" for i in range(32)]
make = lambda name: torch.full((4 * 2**20,), float(names.index(name)))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
write_shards(Path(sys.argv[1]), {n: (4 * 2**20,) for n in names}, make, torch.bfloat16, 32 * 2**20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_peak_rss_of_a_streamed_export_is_bounded(tmp_path):
    """Bound: the largest fp32 tensor and its bf16 cast + 48 MiB (torch's own first allocations): a held output shard (32 MiB) would not fit too.
    Holding a shard (as safetensors' save_file does) or the whole bf16 model (256 MiB) would break it."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    growth = int(out.stdout.split()[-1])
    largest_fp32, cast, overhead = 16 * 2**20, 8 * 2**20, 48 * 2**20
    assert growth <= largest_fp32 + cast + overhead, growth / 2**20
    assert len(list(tmp_path.glob("model-*-of-00008.safetensors"))) == 8
