"""Started by DeepSpeed's launcher (1 CPU rank): the engine-side keys the README lets change on
resume take effect from the first resumed step, through a real engine, checkpoint and load.

    deepspeed --num_gpus 1 resume_probe.py OUT

ZeRO-2: trains 3 steps under config A, saves a checkpoint, builds a fresh engine under config B
(another lr, schedule, warmup, step budget, weight decay, gradient clipping, micro-batch size, and
optimizer offload), loads the checkpoint as ``flanforge train`` does (``apply_resumable_keys``).
ZeRO-3: the same with parameter offload switched on. Writes to OUT, as JSON, what the engines
will use for the next step next to what config B asks for.
"""

import json
import sys
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from flanforge.launcher.config import load_config
from flanforge.launcher.ranks.process_group import start_rank
from flanforge.launcher.training.engine import apply_resumable_keys, build_engine, lr_lambda
from flanforge.launcher.ranks.rank_exit import run_rank
from flanforge.model.training_forward import TrainingModel

A = ["train.lr=0.001", "train.schedule=constant", "train.warmup_steps=0", "train.max_steps=10",
     "train.weight_decay=0.0", "train.grad_clip=1.0", "train.micro_batch_size=4"]
B = ["train.lr=0.004", "train.schedule=cosine", "train.warmup_steps=2", "train.max_steps=12",
     "train.weight_decay=0.25", "train.grad_clip=0.5", "train.micro_batch_size=2", "deepspeed.offload_optimizer=true"]
STEPS = 3


def engine_for(stage: int, overrides: list[str]):
    cfg = load_config(None, [f"deepspeed.zero_stage={stage}", *overrides])
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False))
    return cfg, build_engine(TrainingModel(hf, arch="decoder", fused=True, zero_stage=stage), cfg, 1)


def step(engine, seed: int = 1) -> float:
    """One optimizer step on a fixed batch; returns its loss (the mean token loss before the update)."""
    ids = torch.randint(4, 64, (2, 8), generator=torch.Generator().manual_seed(seed))
    batch = {"input_ids": ids, "labels": ids, "segment_ids": torch.ones_like(ids),
             "position_ids": torch.arange(8).expand(2, 8)}
    loss, _ = engine(batch)  # the summed token losses (every token a target, weight 1)
    loss = loss / ids.numel()
    engine.backward(loss)
    engine.step()
    return float(loss)


def offloaded(offload_config) -> bool:
    """DeepSpeed's offload setting (None, or a config with a device) says the states live on the CPU."""
    return offload_config is not None and offload_config.device == "cpu"


def adam_moments(engine) -> list[list[float]]:
    return [s["exp_avg"].flatten().tolist() for s in engine.optimizer.optimizer.state.values()]


def zero2(root: str) -> dict:
    """Optimizer keys, micro-batch size and optimizer offload switched on."""
    _, engine = engine_for(2, A)
    for _ in range(STEPS):
        step(engine)
    engine.save_checkpoint(root, tag="z2")
    saved_moments = adam_moments(engine)
    cfg, engine = engine_for(2, B)
    engine.load_checkpoint(root, tag="z2")
    restored_lr = engine.get_lr()[0]
    apply_resumable_keys(engine, cfg)
    groups = engine.lr_scheduler.optimizer.param_groups
    result = {
        "scheduler_steps": engine.lr_scheduler.last_epoch,
        "restored_lr": restored_lr,
        "lr": engine.get_lr()[0],
        "expected_lr": cfg.train.lr * lr_lambda(cfg)(STEPS),
        "weight_decay": [g["weight_decay"] for g in groups],
        "grad_clip": engine.gradient_clipping(),
        "micro_batch_size": engine.train_micro_batch_size_per_gpu(),
        "offload_optimizer": offloaded(engine.zero_offload_optimizer()),
        "moments_restored": adam_moments(engine) == saved_moments and any(any(m) for m in saved_moments),
    }
    step(engine)  # the first resumed step, then the rate the one after it uses
    result["lr_after_one_step"] = engine.get_lr()[0]
    result["expected_lr_after_one_step"] = cfg.train.lr * lr_lambda(cfg)(STEPS + 1)
    return result


def zero3(root: str) -> dict:
    """Parameter offload switched on: the first resumed step continues the saved run exactly."""
    _, engine = engine_for(3, [])
    for _ in range(STEPS):
        step(engine)
    engine.save_checkpoint(root, tag="z3")
    continued = [step(engine, seed) for seed in (2, 3)]  # the uninterrupted run's next two losses
    _, engine = engine_for(3, ["deepspeed.offload_param=true"])
    engine.load_checkpoint(root, tag="z3")
    return {"offload_param": offloaded(engine.zero_offload_param()), "continued": continued,
            "resumed": [step(engine, seed) for seed in (2, 3)]}


def main() -> None:
    layout, _ = start_rank()
    with tempfile.TemporaryDirectory() as root:
        result = {"zero2": zero2(root), "zero3": zero3(root)}
    with open(sys.argv[1], "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    run_rank(main)
