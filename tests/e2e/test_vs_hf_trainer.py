"""``benchmarks/vs_hf_trainer.py --quick`` end to end, so the benchmark cannot rot: flanforge
(``flanforge train``: DeepSpeed's launcher, 2 CPU ranks) and HF Trainer + DeepSpeed (the same
launcher running ``benchmarks/hf_trainer_rank.py``) on a small synthetic dialogue set.
A ``--variant`` (flanforge with ``model.attention=sdpa_mask``) runs in the same invocation.
Speed is not asserted (figures belong in BENCHMARKS.md); what is checked is that every
system trained the steps asked for, the variant's override was applied, and the figures
are consistent."""

import json
import random
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BENCH = Path(__file__).parents[2] / "benchmarks" / "vs_hf_trainer.py"
WORDS = "the a meeting tomorrow office coffee train ticket doctor weekend price book call later please".split()


def dialogues(path: Path, n: int = 80) -> None:
    """DialogSum-shaped records (dialogue, summary) of very different lengths."""
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(n):
            turns = [f"#Person{1 + t % 2}#: " + " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
                     for t in range(rng.randint(1, 8))]
            f.write(json.dumps({"fname": f"dev_{i}", "dialogue": "\n".join(turns),
                                "summary": " ".join(rng.choices(WORDS, k=rng.randint(3, 10))), "topic": "t"}) + "\n")


def test_quick_mode_runs_both_systems(tmp_path, run_command):
    from flanforge.launcher.ranks.process_group import free_port

    data = tmp_path / "dialogues.jsonl"
    dialogues(data)
    cmd = [sys.executable, str(BENCH), "--quick", "--data", str(data),
           "--vocab", "400", "--workdir", str(tmp_path / "work"), "--port", str(free_port()),
           "--variant", "masked", "model.attention=sdpa_mask"]
    proc = run_command(cmd, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == 6 and result["max_len"] == 128
    for name in ("flanforge", "hf_trainer", "masked"):
        r = result[name]
        assert r["steps_timed"] == result["steps"] - result["warmup"] - 1, name
        assert 0 < r["useful_tokens_per_s"] <= r["all_tokens_per_s"], name
        assert r["padding_efficiency"] == pytest.approx(r["useful_tokens_per_s"] / r["all_tokens_per_s"], abs=2e-3)
        assert r["peak_rss_mib_per_rank"] > 100, name  # a real training process, not the wrapper
    # Packing fills rows that HF's per-batch padding leaves partly empty (short and long dialogues mixed).
    assert result["flanforge"]["padding_efficiency"] > 0.9 > result["hf_trainer"]["padding_efficiency"]
    ratio = result["flanforge"]["useful_tokens_per_s"] / result["hf_trainer"]["useful_tokens_per_s"]
    assert result["useful_tokens_ratio"] == pytest.approx(ratio, rel=1e-2)
    # The variant is flanforge again with its override applied (the first log line names the attention).
    logs = {name: (tmp_path / "work" / f"{name}_z2.log").read_text() for name in ("flanforge", "masked")}
    assert "attention segments" in logs["flanforge"] and "attention sdpa_mask" in logs["masked"]
    assert result["masked"]["padding_efficiency"] > 0.9
    variant_ratio = result["flanforge"]["useful_tokens_per_s"] / result["masked"]["useful_tokens_per_s"]
    assert result["flanforge_vs_masked"] == pytest.approx(variant_ratio, rel=1e-2)
    assert result["masked_useful_tokens_ratio_per_repeat"] == [result["masked_useful_tokens_ratio"]]  # one repeat
    # Both trained on the same examples: HF's log shows its loss, flanforge's TensorBoard has every step.
    assert (tmp_path / "work" / "flanforge_z2" / "tensorboard").is_dir()
    assert json.loads((tmp_path / "work" / "hf_z2" / "rank0.json").read_text())["step_ends"]
