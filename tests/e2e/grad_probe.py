"""Started by DeepSpeed's launcher (1 or 2 CPU ranks): for each case, one accumulation
window of a fixed global batch of variable-length rows through a fresh engine and
``LossWindow``; rank 0 saves the full (unpartitioned) gradients just before the step.

    deepspeed --num_gpus W grad_probe.py OUT 'MICRO_BATCH,GRAD_ACCUM,ZERO_STAGE,NORMALIZATION;...'

OUT gets ``{case: {param name: grad}}``.
"""

import sys

import torch
from deepspeed.utils import safe_get_full_grad
from transformers import LlamaConfig, LlamaForCausalLM

from flanforge.launcher.config import load_config
from flanforge.launcher.ranks.process_group import start_rank
from flanforge.launcher.training.engine import build_engine
from flanforge.launcher.training.loss import LossWindow
from flanforge.launcher.ranks.rank_exit import run_rank
from flanforge.mixtures.streaming.packing import PackedBatch
from flanforge.model.training_forward import TrainingModel

GLOBAL_ROWS, T, VOCAB = 8, 16, 97


def global_batch() -> list[dict]:
    """Eight rows with 0-3 segments each and very different numbers of target tokens."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(GLOBAL_ROWS):
        ids = torch.randint(4, VOCAB, (T,), generator=g)
        seg = torch.zeros(T, dtype=torch.long)
        pos = torch.zeros(T, dtype=torch.long)
        labels = torch.full((T,), -100)
        start, s = 0, 1
        for length in torch.randint(2, 9, (i % 4,), generator=g).tolist():
            end = min(T, start + length)
            seg[start:end] = s
            pos[start:end] = torch.arange(end - start)
            n_in = (end - start) // 2  # inputs first, then targets
            labels[start + n_in:end] = ids[start + n_in:end]
            start, s = end, s + 1
        rows.append({"input_ids": ids, "labels": labels, "segment_ids": seg, "position_ids": pos,
                     "meta": [{"task": "t", "group": "g", "format": "zs_noopt"}] * (s - 1)})
    return rows


def collate(rows: list[dict]) -> PackedBatch:
    tensors = {k: torch.stack([r[k] for r in rows]) for k in ("input_ids", "labels", "segment_ids", "position_ids")}
    zeros = torch.zeros(len(rows), dtype=torch.long)  # no stream: no block positions to track
    return PackedBatch(tensors, [r["meta"] for r in rows], zeros, zeros, zeros, {})


def gradients(mb: int, ga: int, stage: int, norm: str, world: int, rank: int) -> dict[str, torch.Tensor]:
    assert mb * ga * world == GLOBAL_ROWS
    cfg = load_config(None, [f"train.micro_batch_size={mb}", f"train.grad_accum={ga}",
                             f"deepspeed.zero_stage={stage}", f"train.loss_normalization={norm}",
                             "train.grad_clip=0"])
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False))
    engine = build_engine(TrainingModel(hf, arch="decoder", fused=True, zero_stage=stage), cfg, world)
    rows = global_batch()
    micro = [collate(rows[(m * world + rank) * mb:(m * world + rank + 1) * mb]) for m in range(ga)]
    window = LossWindow(micro, norm, world)
    grads = {}
    for m, batch in enumerate(micro):
        loss, _ = engine({**batch.tensors, **window.loss_inputs(batch)})
        engine.backward(loss, scale_wrt_gas=False)
        if m == ga - 1:
            grads = {n: safe_get_full_grad(p).clone() for n, p in engine.module.named_parameters()}
        engine.step()
    return grads


def main() -> None:
    out, cases = sys.argv[1], [c.split(",") for c in sys.argv[2].split(";")]
    layout, _ = start_rank()
    results = {}
    for mb, ga, stage, norm in cases:
        results[f"{mb},{ga},{stage},{norm}"] = gradients(int(mb), int(ga), int(stage), norm,
                                                         layout.world_size, layout.rank)
    if layout.rank == 0:
        torch.save(results, out)


if __name__ == "__main__":
    run_rank(main)
