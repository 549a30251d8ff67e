"""The training data side of a rank: tokenizer on first use, shards, the mixture stream, its state."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import torch.distributed as dist

from flanforge.launcher.config import Config
from flanforge.launcher.dist import RankLayout
from flanforge.errors import UserError
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.shards import Manifest, ensure_prepared
from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.stream import MixtureStream, build_loader
from flanforge.model.load import load_configured_tokenizer
from flanforge.model.tokenizer import SPM_FILE, Tokenizer, load_tokenizer, train_tokenizer

TOKENIZER_TEXTS = 20_000


def prepare_tokenizer(cfg: Config, mixture: Mixture, rank0: bool) -> Tokenizer:
    """The run's tokenizer: ``model.tokenizer_path``, the model directory's own, the one
    saved with the run, or trained now on rank 0."""
    configured = load_configured_tokenizer(cfg.model)
    if configured is not None:
        return configured
    run_tok = Path(cfg.output_dir) / "tokenizer"
    if rank0 and not (run_tok / SPM_FILE).is_file():
        try:
            train_tokenizer(tokenizer_corpus(mixture, cfg.seed), run_tok, cfg.model.vocab_size)
        except RuntimeError as err:  # SentencePiece's trainer: a vocabulary too small for the mixture's characters
            detail = " ".join(str(err).split("]")[-1].split())
            raise UserError(f"model.vocab_size={cfg.model.vocab_size}: the tokenizer cannot be trained: {detail}") from None
    dist.barrier()
    try:
        return load_tokenizer(run_tok)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"the run's tokenizer is damaged: {err}") from None


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


def shards_dir(cfg: Config) -> Path:
    return Path(cfg.mixture.shards_dir or Path(cfg.output_dir) / "shards")


class TrainData:
    """The rank's DataLoader over the mixture stream, what it consumed, and its counters."""

    def __init__(self, cfg: Config, mixture: Mixture, tokenizer: Tokenizer, layout: RankLayout,
                 state: Optional[dict[str, Any]]):
        root = shards_dir(cfg)
        if layout.rank == 0:
            ensure_prepared(mixture, root)  # prepares what is missing, checks checksums
        dist.barrier()
        stream_cfg = StreamConfig.from_section(
            cfg.mixture, seed=cfg.seed, micro_batch_size=cfg.train.micro_batch_size, arch=cfg.model.arch
        )
        weights = cfg.mixture.weights or None
        self.world_size = layout.world_size
        self.stream = MixtureStream(mixture, tokenizer, stream_cfg, Manifest.load(root), layout.rank,
                                    layout.world_size, state=(state or {}).get("stream"), rate_overrides=weights)
        self.loader = build_loader(self.stream)
        self.tracker = self.stream.tracker()
        self.base_counters: dict[str, int] = dict((state or {}).get("counters", {}))
        self.mixture, self.tokenizer = mixture, tokenizer
        rates = mixture.rates(weights)
        self.top_tasks = set(sorted(rates, key=rates.__getitem__, reverse=True)[: cfg.train.log_top_tasks])

    def _gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def counters(self) -> dict[str, int]:
        """Over-length examples truncated/dropped (all ranks, whole run) and bad records skipped. Collective."""
        totals = {"overlong_truncated": 0, "overlong_dropped": 0, **self.base_counters}
        for per_task in self._gather(self.tracker.counters):
            for counts in per_task.values():
                for key, n in counts.items():
                    totals[f"overlong_{key}"] = totals.get(f"overlong_{key}", 0) + n
        totals["bad_records_skipped"] = sum(self.stream.bad_records().values())
        return totals

    def state_dict(self) -> dict[str, Any]:
        """The stream's world-size-independent state plus the counters. Collective."""
        return {"stream": self.stream.state_dict(self._gather(self.tracker.summary())), "counters": self.counters()}

    def sample_prompts(self, n: int = 4) -> str:
        """A few rendered examples for TensorBoard's text tab."""
        rng = random.Random(0)
        parts = []
        for task in sorted(self.mixture.tasks(), key=lambda t: t.name)[:n]:
            example = task.render(task.records("train")[0], rng, 0)
            parts.append(f"[{task.name} | {example.template_id} | {example.format}]\n{example.inputs}\n=> {example.targets}")
        return "\n\n".join(parts)

