"""Stage ``train``: end-to-end training throughput, MFU and peak memory on one device.

``configs/bench_1b.yaml`` (a ~1B Llama-style decoder, random init, bf16, packed
``builtin`` rows of 2048 tokens) is set up by flanforge's own lifecycle
(``launcher.training.loop.setup``: tokenizer, shards, stream, model, DeepSpeed engine on
one rank). The same engine then trains under each variant in turn, the fused or
the unfused loss and each attention implementation (switched in place: weights
and optimizer carry on, which does not change a step's cost), ``WARMUP`` steps
(flex compiles here) then ``STEPS`` timed ones. Per variant: row tokens/s (padding
included, as the model computes it), MFU (``launcher.training.tensorboard``: 6 N FLOPs per token
over the GPU's dense bf16 peak; attention FLOPs not counted), peak memory
(``max_memory_allocated``) beside ``flanforge plan``'s prediction for the same setting (its total less the
CUDA context and allocator slack, which ``max_memory_allocated`` does not count), and the last loss.

The tokenizer and shards are cached in ``.gpu-cache/`` (prepared with one worker per
CPU on first use). ``--cpu-smoke``: a 2-layer model on the ``demo`` mixture, fp32,
rows of 128, on CPU (no MFU, no memory figure).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "bench_1b.yaml"
SMOKE_OVERRIDES = [
    "model.hf_config={hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, "
    "num_key_value_heads: 2, max_position_embeddings: 128}",
    "model.vocab_size=500", "mixture.name=demo", "mixture.seq_len=128", "mixture.num_workers=0",
    "train.micro_batch_size=2", "train.precision=fp32",
]
STEPS = {"gpu": (2, 8), "smoke": (1, 2)}  # (warm-up, timed)


def prepare_inputs(cfg, cache: Path) -> list[str]:
    """Train the tokenizer and prepare the shards into ``cache`` unless there; overrides pointing at them."""
    from flanforge.launcher.training.data import tokenizer_corpus
    from flanforge.mixtures.registry import load_mixture
    from flanforge.mixtures.streaming.shards import ensure_prepared
    from flanforge.model.tokenizer import SPM_FILE, train_tokenizer

    mixture = load_mixture(cfg.mixture.name)
    tokenizer_dir = cache / f"tokenizer-{mixture.name}-{cfg.model.vocab_size}"
    if not (tokenizer_dir / SPM_FILE).is_file():
        train_tokenizer(tokenizer_corpus(mixture, cfg.seed), tokenizer_dir, cfg.model.vocab_size)
    shards = cache / f"shards-{mixture.name}"
    ensure_prepared(mixture, shards, workers=os.cpu_count() or 1)
    return [f"model.tokenizer_path={tokenizer_dir}", f"mixture.shards_dir={shards}"]


def variants(device: str) -> list[tuple[bool, str]]:
    """(fused loss?, attention): the fused loss with every implementation, and the unfused one with ``auto``'s."""
    from flanforge.model import attention

    return [(True, name) for name in attention.names()] + [(False, attention.resolve("auto", device))]


def eager_attention_bytes(cfg) -> int:
    """What transformers' eager attention keeps for backward at this shape: per layer the scores and the
    probabilities of every head, (B, heads, T, T) in the training dtype, plus the fp32 softmax being built.
    At configs/bench_1b.yaml (22 layers, 32 heads, T 2048, B 4, bf16) ~46 GiB: more than half an 80 GB card."""
    hf, t = cfg.model.hf_config, cfg.train
    probs = t.micro_batch_size * hf["num_attention_heads"] * cfg.mixture.seq_len ** 2
    return hf["num_hidden_layers"] * probs * 2 * 2 + probs * 4


def memory_guard(impl: str, cfg, device: str) -> str | None:
    """Why a variant is not run on this card (its attention alone would not fit in half of it), or None."""
    import torch

    from flanforge.model import attention

    if device != "cuda" or attention.get(impl).hf_name != "eager":
        return None
    need, card = eager_attention_bytes(cfg), torch.cuda.get_device_properties(0).total_memory
    if need <= card / 2:
        return None
    return f"not run: eager attention keeps ~{need / 2**30:.0f} GiB of probabilities, over half of {card / 2**30:.0f} GiB"


def train_steps(run, batches, count: int) -> tuple[int, float, float]:
    """``count`` optimizer steps (one micro-batch each); (row tokens, model FLOPs, last mean loss)."""
    from flanforge.constants import IGNORE_INDEX
    from flanforge.launcher.training.flops import StepLengths
    from flanforge.launcher.training.loop import to_device

    engine, tokens, flops, loss = run.engine, 0, 0.0, float("nan")
    for _ in range(count):
        batch = next(batches)
        total, _ = engine(to_device(batch.tensors, engine.device))  # summed target-token losses (weight 1 each)
        targets = (batch.tensors["labels"] != -100).sum().clamp(min=1).to(total.device)
        mean = total / targets
        engine.backward(mean)
        engine.step()
        tokens += batch.tensors["input_ids"].numel()
        flops += run.flops.step_flops(StepLengths.of([batch], IGNORE_INDEX))
        loss = mean.item()
    return tokens, flops, loss


def planned(cfg, fused: bool, impl: str, device: str) -> int:
    """``flanforge plan``'s bytes for one rank of this variant, less the CUDA context and allocator slack (the
    vocabulary is the prepared tokenizer's: ``model.tokenizer_path``)."""
    import dataclasses

    from flanforge.launcher.planning import memory_plan as mp

    model = dataclasses.replace(cfg.model, attention=impl, fused_loss=fused)
    variant = dataclasses.replace(cfg, model=model)
    e = mp.estimate(mp.workload(variant, 1, 1, device), mp.configured_setting(variant), cfg.train.micro_batch_size)
    return e.total - e.overhead


def measure(run, batches, device: str, steps: tuple[int, int]) -> dict:
    import torch

    from flanforge.launcher.training.flops import model_flops_utilization

    cuda = device == "cuda"
    train_steps(run, batches, steps[0])  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    tokens, flops, loss = train_steps(run, batches, steps[1])
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens_per_s = tokens / elapsed
    mfu = model_flops_utilization(flops, elapsed, run.device_name, run.context.precision)
    return {
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(mfu, 4) if mfu is not None else "not measured: no GPU (no peak FLOP/s for a CPU)",
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else "not measured on CPU",
        "loss": round(loss, 4),
    }


def run(smoke: bool) -> dict:
    import torch

    from flanforge.launcher.config import load_config
    from flanforge.launcher.ranks.process_group import free_port
    from flanforge.launcher.evaluation.periodic import PeriodicEval
    from flanforge.launcher.training.loop import cleanup, setup
    from flanforge.model import attention

    device = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
    overrides = SMOKE_OVERRIDES if smoke else []
    workdir = Path(tempfile.mkdtemp(prefix="flanforge-gpu-e2e-"))
    cache = workdir / "cache" if smoke else ROOT / ".gpu-cache"
    overrides = overrides + [f"output_dir={workdir / 'run'}"]
    overrides += prepare_inputs(load_config(CONFIG, overrides), cache)
    cfg = load_config(CONFIG, overrides)
    os.environ["MASTER_PORT"] = str(free_port())  # one rank, no launcher: env:// needs a port
    run_ = setup(cfg, PeriodicEval)
    model = run_.engine.module  # flanforge.model.training_forward.TrainingModel
    dropout = attention.attention_dropout(model.hf.config)
    results = {}
    batches = iter(run_.data.loader)
    try:
        for fused, impl in variants(device):
            key = f"{'fused' if fused else 'unfused'}_loss+{impl}"
            reason = attention.unavailable_reason(impl, device, training=True, dropout=dropout)
            if reason is not None:
                results[key] = f"not run: {reason}"
                continue
            guarded = memory_guard(impl, cfg, device)
            if guarded is not None:
                results[key] = guarded
                continue
            model.fused = fused
            attention.use(model.hf, impl)
            model.attention = impl
            results[key] = measure(run_, batches, device, STEPS["smoke" if smoke else "gpu"])
            plan = planned(cfg, fused, impl, device)
            results[key]["plan_gib"] = round(plan / 2**30, 2)
            if device == "cuda":
                results[key]["plan_over_measured"] = round(plan / 2**30 / results[key]["peak_memory_gib"], 3)
    finally:
        cleanup(run_)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"device": run_.device_name, "parameters": run_.n_params, "seq_len": cfg.mixture.seq_len,
            "micro_batch_size": cfg.train.micro_batch_size, "precision": cfg.train.precision,
            "zero_stage": cfg.deepspeed.zero_stage, "variants": results}
