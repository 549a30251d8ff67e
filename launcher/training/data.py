"""The training data side of a rank: tokenizer on first use, shards, the mixture stream, its state."""

from __future__ import annotations

import random
from typing import Any, Iterator

import torch.distributed as dist

from flanforge.errors import UserError
from flanforge.launcher.training.context import RunContext
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.streaming.packing import DROPPED, TRUNCATED, PackedBatch
from flanforge.mixtures.streaming.shards import Manifest, ensure_prepared
from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.streaming.stream import CORRUPT, RETRIES, MixtureStream, build_loader
from flanforge.model.load import load_configured_tokenizer
from flanforge.model.tokenizer import SPM_FILE, Tokenizer, load_tokenizer, train_tokenizer

TOKENIZER_TEXTS = 20_000


def prepare_tokenizer(run: RunContext, mixture: Mixture) -> Tokenizer:
    """The run's tokenizer: ``model.tokenizer_path``, the model directory's own, the one
    saved with the run, or trained now on rank 0."""
    cfg = run.cfg
    configured = load_configured_tokenizer(cfg.model)
    if configured is not None:
        return configured
    run_tok = run.run_dir.tokenizer
    if run.layout.is_main and not (run_tok / SPM_FILE).is_file():
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


STREAM_COUNTERS = {TRUNCATED: "overlong_truncated", DROPPED: "overlong_dropped", CORRUPT: "corrupt_records_skipped",
                   RETRIES: "retries"}
"""The stream's per-task counters, by their names in TensorBoard (``data/...``) and the run's counters."""


class TrainData:
    """The rank's DataLoader over the mixture stream, what it consumed, and its counters."""

    def __init__(self, run: RunContext, mixture: Mixture, tokenizer: Tokenizer):
        cfg, layout, root = run.cfg, run.layout, run.run_dir.shards
        if layout.is_main:
            ensure_prepared(mixture, root, on_bad_member=cfg.mixture.on_bad_record,  # prepares what is missing,
                            storage=cfg.storage)  # checks checksums
        dist.barrier()
        stream_cfg = StreamConfig.from_section(
            cfg.mixture, seed=cfg.seed, micro_batch_size=cfg.train.micro_batch_size, arch=cfg.model.arch
        )
        weights = cfg.mixture.weights or None
        self.world_size = layout.world_size
        self.stream = MixtureStream(mixture, tokenizer, stream_cfg, Manifest.load(root, cfg.storage), layout.rank,
                                    layout.world_size, rate_overrides=weights)
        self.loader = build_loader(self.stream, pin_memory=run.device is not None and run.device.type == "cuda")
        self._batches: Iterator[PackedBatch] | None = None
        self.tracker = self.stream.tracker()
        self.base_counters: dict[str, int] = {}  # the counters of the run before a resume
        self.mixture, self.tokenizer = mixture, tokenizer
        rates = mixture.rates(weights)
        self.top_tasks = set(sorted(rates, key=rates.__getitem__, reverse=True)[: cfg.train.log_top_tasks])

    def batches(self) -> Iterator[PackedBatch]:
        """The loader's batches (its worker processes start here); :meth:`close` stops them."""
        self._batches = iter(self.loader)
        return self._batches

    def close(self) -> None:
        """Stop the loader's worker processes now (their queues and shared memory go with them),
        not whenever the iterator is collected: a failed rank's traceback keeps it alive."""
        shutdown = getattr(self._batches, "_shutdown_workers", None)  # multi-worker iterators only
        if shutdown is not None:
            shutdown()
        self._batches = None

    def _gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def local_counters(self) -> dict[str, int]:
        """This rank's over-length examples truncated/dropped and corrupt records skipped since the run (re)started."""
        totals = dict.fromkeys(STREAM_COUNTERS.values(), 0)
        for counts in self.tracker.counters.values():
            for key, n in counts.items():
                totals[STREAM_COUNTERS[key]] += n
        return totals

    def run_counters(self, local: dict[str, float]) -> dict[str, float]:
        """The whole run's counters from the ranks' summed ``local_counters``: the resumed run's counts
        added, and the bad records skipped."""
        totals = {**local}
        for key, n in self.base_counters.items():
            totals[key] = totals.get(key, 0) + n
        totals["bad_records_skipped"] = sum(self.stream.bad_records().values())
        return totals

    def counters(self) -> dict[str, int]:
        """Over-length examples truncated/dropped (all ranks, whole run) and bad records skipped. Collective."""
        summed: dict[str, int] = {}
        for part in self._gather(self.local_counters()):
            for key, n in part.items():
                summed[key] = summed.get(key, 0) + n
        return self.run_counters(summed)

    def state_dict(self) -> dict[str, Any]:
        """The stream's world-size-independent state plus the counters. Collective."""
        return {"stream": self.stream.state_dict(self._gather(self.tracker.summary())), "counters": self.counters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved :meth:`state_dict`; before the loader is first iterated."""
        self.stream.load_state_dict(state["stream"])
        self.tracker = self.stream.tracker()
        self.base_counters = dict(state.get("counters", {}))

    def sample_prompts(self, n: int = 4) -> str:
        """A few rendered examples for TensorBoard's text tab."""
        rng = random.Random(0)
        parts = []
        for task in sorted(self.mixture.tasks(), key=lambda t: t.name)[:n]:
            example = task.render(task.records("train")[0], rng, 0)
            parts.append(f"[{task.name} | {example.template_id} | {example.format}]\n{example.inputs}\n=> {example.targets}")
        return "\n\n".join(parts)

