"""Started by DeepSpeed's launcher (1 CPU rank): the keys the README lets change on resume take
effect from the first resumed step, through a real engine, checkpoint and load.

    deepspeed --num_gpus 1 resume_probe.py OUT

Trains 3 steps under config A, saves a checkpoint, builds a fresh engine under config B
(another lr, schedule, warmup, step budget, weight decay, gradient clipping), loads the
checkpoint as ``flanforge train`` does (``apply_resumable_keys``) and writes to OUT, as JSON,
what the engine will use for the next step next to what config B asks for.
"""

import json
import sys
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from flanforge.launcher.config import load_config
from flanforge.launcher.dist import export_torch_env, init_process_group, read_rank_layout
from flanforge.launcher.engine import apply_resumable_keys, build_engine, lr_lambda
from flanforge.model.training_forward import TrainingModel

A = ["train.lr=0.001", "train.schedule=constant", "train.warmup_steps=0", "train.max_steps=10",
     "train.weight_decay=0.0", "train.grad_clip=1.0"]
B = ["train.lr=0.004", "train.schedule=cosine", "train.warmup_steps=2", "train.max_steps=12",
     "train.weight_decay=0.25", "train.grad_clip=0.5"]
STEPS = 3


def engine_for(overrides: list[str]):
    cfg = load_config(None, ["deepspeed.zero_stage=2", *overrides])
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False))
    return cfg, build_engine(TrainingModel(hf, arch="decoder", fused=True, zero_stage=2), cfg, 1)


def step(engine) -> None:
    ids = torch.randint(4, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "labels": ids, "segment_ids": torch.ones_like(ids),
             "position_ids": torch.arange(8).expand(2, 8)}
    loss, _ = engine(batch)  # the summed token losses (every token a target, weight 1)
    engine.backward(loss / ids.numel())
    engine.step()


def main() -> None:
    layout = read_rank_layout()
    export_torch_env(layout)
    init_process_group()
    _, engine = engine_for(A)
    for _ in range(STEPS):
        step(engine)
    with tempfile.TemporaryDirectory() as root:
        engine.save_checkpoint(root, tag="t")
        cfg, engine = engine_for(B)
        engine.load_checkpoint(root, tag="t")
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
    }
    step(engine)  # the first resumed step, then the rate the one after it uses
    result["lr_after_one_step"] = engine.get_lr()[0]
    result["expected_lr_after_one_step"] = cfg.train.lr * lr_lambda(cfg)(STEPS + 1)
    with open(sys.argv[1], "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
