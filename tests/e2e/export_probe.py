"""The trained engine's outputs on a fixed batch, for tests/e2e/test_export.py.

Runs as every rank of a ``deepspeed`` launch, at the world size of the runs::

    PYTHONSAFEPATH=1 DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 python -m deepspeed.launcher.runner \\
        --num_gpus 2 --master_port PORT --no_local_rank tests/e2e/export_probe.py OUT.pt RUN_DIR...

For each RUN_DIR it builds the engine as ``launcher/training/loop.py`` does (the run's
config.yaml and tokenizer, ``build_model``, ``TrainingModel``, ``build_engine``),
restores ``checkpoints/latest`` with ``launcher.training.checkpoint.Checkpointer`` and, on every
rank (ZeRO-3 gathers each layer from all ranks), computes

- ``logits``: ``engine.module.hf(**inputs).logits``, the HF model's own forward, (B, T, V);
- ``losses``: ``engine(batch)``, the training forward (fused LM head + loss), (B, T).

Rank 0 saves ``{run_dir: {"inputs", "batch", "logits", "losses"}}`` to OUT.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

B, T_ENC, T_DEC = 2, 16, 8


def sample_batch(arch: str, vocab_size: int) -> tuple[dict, dict]:
    """(HF forward inputs, TrainingModel batch) on fixed random tokens, one example per row."""
    from flanforge.model.tokenizer import PAD_ID, UNK_ID

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(UNK_ID + 1, vocab_size, (B, T_ENC), generator=gen)
    ones = torch.ones(B, T_ENC, dtype=torch.long)
    if arch == "decoder":
        labels = torch.cat([ids[:, 1:], torch.full((B, 1), -100)], dim=1)  # next token; none after the last
        positions = torch.arange(T_ENC).expand(B, T_ENC)
        return {"input_ids": ids}, {"input_ids": ids, "labels": labels, "segment_ids": ones, "position_ids": positions}
    targets = torch.randint(UNK_ID + 1, vocab_size, (B, T_DEC), generator=gen)
    decoder_ids = torch.cat([torch.full((B, 1), PAD_ID), targets[:, :-1]], dim=1)  # shifted right, pad as start
    inputs = {"input_ids": ids, "decoder_input_ids": decoder_ids}
    batch = {
        **inputs, "labels": targets, "segment_ids": ones,
        "decoder_segment_ids": torch.ones(B, T_DEC, dtype=torch.long),
        "position_ids": torch.arange(T_ENC).expand(B, T_ENC),
        "decoder_position_ids": torch.arange(T_DEC).expand(B, T_DEC),
    }
    return inputs, batch


def probe(run_dir: Path, layout) -> dict:
    from flanforge.launcher.training.checkpoint import Checkpointer, EngineFiles
    from flanforge.launcher.config import load_config
    from flanforge.launcher.training.engine import build_engine
    from flanforge.launcher.training.rundir import RunDir
    from flanforge.launcher.training.loop import TrainState
    from flanforge.model.load import build_model, load_configured_tokenizer
    from flanforge.model.training_forward import TrainingModel
    from flanforge.model.tokenizer import load_tokenizer

    paths = RunDir(run_dir)
    cfg = load_config(paths.config)
    tokenizer = load_configured_tokenizer(cfg.model) or load_tokenizer(paths.tokenizer)
    model = build_model(cfg.model, tokenizer, cfg.seed)
    wrapped = TrainingModel(model, arch=cfg.model.arch, fused=cfg.model.fused_loss, zero_stage=cfg.deepspeed.zero_stage)
    engine = build_engine(wrapped, cfg, layout.world_size)
    state = TrainState()
    checkpointer = Checkpointer(paths, layout, keep_last=1)
    checkpointer.register("trainer", state)
    checkpointer.register("engine", EngineFiles(engine), scope="files")
    assert checkpointer.load(paths.latest_tag()), f"{run_dir}: no checkpoint to load"
    engine.eval()  # T5 has dropout
    inputs, batch = sample_batch(cfg.model.arch, tokenizer.vocab_size)
    with torch.no_grad():
        logits = engine.module.hf(**inputs, use_cache=False).logits.float()  # (B, T, V)
        losses = engine(batch)[1]  # (B, T)
    out = {"step": state.step, "inputs": inputs, "batch": batch, "logits": logits, "losses": losses}
    engine.destroy()
    return out


def main(out_file: str, run_dirs: list[str]) -> int:
    from flanforge.launcher.ranks.process_group import start_rank

    layout, _ = start_rank()
    results = {run_dir: probe(Path(run_dir), layout) for run_dir in run_dirs}
    if layout.rank == 0:
        torch.save(results, out_file)
    return 0


if __name__ == "__main__":
    from flanforge.launcher.ranks.rank_exit import run_rank

    run_rank(lambda: main(sys.argv[1], sys.argv[2:]))
