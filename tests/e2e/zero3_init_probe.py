"""Started by DeepSpeed's launcher on 2 CPU ranks: builds the tiny decoder and T5 from scratch
under ZeRO-3 (``build_model(..., zero3=...)``) and without it, with the same seed.

    deepspeed --num_gpus 2 zero3_init_probe.py OUT TOKENIZER_DIR

Rank 0 saves ``{arch: {"plain": state, "zero3": gathered state, "local": [elements held per rank],
"total": parameter count}}``.
"""

import sys

import torch
import deepspeed

from flanforge.launcher.config import load_config
from flanforge.launcher.ranks.process_group import start_rank
from flanforge.launcher.ranks.rank_exit import run_rank
from flanforge.launcher.training.engine import deepspeed_config
from flanforge.model.load import build_model, count_parameters
from flanforge.model.tokenizer import load_tokenizer

ARCHS = {"decoder": [], "t5": ["model.arch=t5"]}


def main() -> None:
    out, tokenizer = sys.argv[1], load_tokenizer(sys.argv[2])
    layout, _ = start_rank()
    results = {}
    for arch, overrides in ARCHS.items():
        cfg = load_config(None, ["deepspeed.zero_stage=3", "train.precision=fp32", *overrides])
        plain = build_model(cfg.model, tokenizer, cfg.seed)
        zero3 = build_model(cfg.model, tokenizer, cfg.seed, zero3=deepspeed_config(cfg, layout.world_size))
        local = torch.tensor([sum(p.ds_tensor.numel() for p in zero3.parameters())])
        held = [torch.zeros_like(local) for _ in range(layout.world_size)]
        torch.distributed.all_gather(held, local)
        with deepspeed.zero.GatheredParameters(list(zero3.parameters())):
            gathered = {k: v.clone() for k, v in zero3.state_dict().items()}
        results[arch] = {"plain": plain.state_dict(), "zero3": gathered, "local": [int(h) for h in held],
                         "total": count_parameters(zero3)}
    if layout.rank == 0:
        torch.save(results, out)


if __name__ == "__main__":
    run_rank(main)
