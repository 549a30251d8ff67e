"""The training data side of a rank: tokenizer on first use, the mixture stream, its state."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from flanforge.launcher.config import Config
from flanforge.mixtures.mixture import Mixture
from flanforge.model.tokenizer import Tokenizer, load_tokenizer, train_tokenizer

TOKENIZER_TEXTS = 20_000


def prepare_tokenizer(cfg: Config, mixture: Mixture, rank0: bool) -> Tokenizer:
    """The run's tokenizer: ``model.tokenizer_path``, the one saved with the run, or trained now on rank 0."""
    if cfg.model.tokenizer_path is not None:
        return load_tokenizer(cfg.model.tokenizer_path)
    run_tok = Path(cfg.output_dir) / "tokenizer"
    if rank0 and not (run_tok / "spiece.model").is_file():
        train_tokenizer(tokenizer_corpus(mixture, cfg.seed), run_tok, cfg.model.vocab_size)
    dist.barrier()
    return load_tokenizer(run_tok)


def tokenizer_corpus(mixture: Mixture, seed: int) -> list[str]:
    """Rendered inputs and targets from every task, about ``TOKENIZER_TEXTS`` texts in all."""
    tasks = mixture.tasks()
    per_task = max(4, TOKENIZER_TEXTS // (2 * len(tasks)))
    rng = random.Random(seed)
    texts: list[str] = []
    for task in tasks:
        records = task.records("train")
        for i in range(min(per_task, len(records))):
            example = task.render(records[i], rng, i)
            texts += [example.inputs, example.targets]
    return texts


# ---- TEMPORARY scaffold until mixtures/stream.py lands (replaced, not committed as is)
@dataclass
class _Tracker:
    consumed: int = 0

    def update(self, batch):
        self.consumed += 1


class TrainData:
    def __init__(self, cfg, mixture, tokenizer, layout, state):
        self.cfg, self.mixture, self.tok, self.layout = cfg, mixture, tokenizer, layout
        self.tracker = _Tracker(consumed=(state or {}).get("consumed", 0))
        self.group_of = mixture.group_of()
        self.top_tasks = set(self.group_of)
        self.loader = self._batches()

    def _batches(self):
        cfg = self.cfg
        rates = self.mixture.rates()
        names = list(rates)
        tasks = {t.name: t for t in self.mixture.tasks()}
        T = cfg.mixture.seq_len
        i = self.tracker.consumed
        while True:
            rng = random.Random(f"{cfg.seed}/{i}/{self.layout.rank}")
            rows = []
            for _ in range(cfg.train.micro_batch_size):
                ids, labels, seg, pos, meta = [], [], [], [], []
                s = 1
                while True:
                    t = tasks[rng.choices(names, [rates[n] for n in names])[0]]
                    rec = rng.choice(t.records())
                    ex = t.render(rec, rng)
                    a = self.tok.encode(ex.inputs)
                    b = self.tok.encode(ex.targets) + [self.tok.eos_id]
                    seq = a + b
                    if len(ids) + len(seq) > T:
                        break
                    ids += seq
                    labels += [-100] * (len(a) - 1) + b + [-100]
                    seg += [s] * len(seq)
                    pos += list(range(len(seq)))
                    meta.append({"task": t.name, "group": self.group_of[t.name], "template_id": ex.template_id, "format": ex.format})
                    s += 1
                pad = T - len(ids)
                rows.append((ids + [0] * pad, labels + [-100] * pad, seg + [0] * pad, pos + [0] * pad, meta))
            yield {
                "input_ids": torch.tensor([r[0] for r in rows]),
                "labels": torch.tensor([r[1] for r in rows]),
                "segment_ids": torch.tensor([r[2] for r in rows]),
                "position_ids": torch.tensor([r[3] for r in rows]),
                "meta": [r[4] for r in rows],
            }
            i += 1

    def state_dict(self):
        return {"consumed": self.tracker.consumed}

    def counters(self):
        return {}

    def sample_prompts(self):
        return "scaffold"

    def close(self):
        pass


def build_train_data(cfg, mixture, tokenizer, layout, state):
    return TrainData(cfg, mixture, tokenizer, layout, state)
