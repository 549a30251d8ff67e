"""The GPU training stage's memory guard: eager attention's kept probabilities, counted by hand."""

import importlib.util
from pathlib import Path

from flanforge.launcher.config import load_config

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_e2e", ROOT / "benchmarks" / "gpu" / "e2e.py")
e2e = importlib.util.module_from_spec(spec)
spec.loader.exec_module(e2e)


def test_eager_attention_bytes_by_hand():
    cfg = load_config(ROOT / "configs" / "bench_1b.yaml", [])
    probs = 4 * 32 * 2048 * 2048  # micro batch x heads x T x T
    assert e2e.eager_attention_bytes(cfg) == 22 * probs * 2 * 2 + probs * 4  # ~46 GiB: skipped on an 80 GB card
    assert e2e.memory_guard("eager_mask", cfg, "cpu") is None and e2e.memory_guard("sdpa_mask", cfg, "cpu") is None
