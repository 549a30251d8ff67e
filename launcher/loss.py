"""Loss normalisation over the global batch, and per-task / per-format loss bookkeeping.

DeepSpeed averages gradients over the data-parallel ranks, and flanforge calls
``engine.backward(..., scale_wrt_gas=False)``. So for the gradient of the
global batch to be ``sum(token losses) / N`` (N = target tokens of every
micro-batch of the accumulation window on every rank), each micro-batch
contributes ``sum(its token losses) * world_size / N``. With
``loss_normalization: sequence`` each example's mean token loss counts once
and N is the number of examples (T5X's average-per-sequence).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.distributed as dist

from flanforge.mixtures.formats import format_kind

IGNORE_INDEX = -100


def label_segments(batch: dict[str, Any]) -> torch.Tensor:
    """Segment ids aligned with the labels, (B, T)."""
    return batch["decoder_segment_ids"] if "decoder_segment_ids" in batch else batch["segment_ids"]


def segment_sums(values: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (row, segment) sum of ``values`` over target tokens and their count; each (B, S+1)."""
    seg = label_segments(batch).long()
    target = (batch["labels"] != IGNORE_INDEX).to(values.dtype)
    n_seg = int(seg.max()) + 1 if seg.numel() else 1
    sums = torch.zeros(seg.shape[0], n_seg, dtype=values.dtype, device=values.device)
    counts = torch.zeros_like(sums)
    sums.scatter_add_(1, seg, values * target)
    counts.scatter_add_(1, seg, target)
    return sums, counts


def _all_reduce_sum(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


class LossWindow:
    """One optimizer step's micro-batches: the normaliser and what the step's losses were."""

    def __init__(self, micro: list[dict[str, Any]], mode: str, world_size: int):
        self.mode = mode
        self.world_size = world_size
        tokens = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro)
        examples = sum(_examples_with_targets(b) for b in micro)
        tokens, examples = _all_reduce_sum([tokens, examples])
        self.denominator = max(1.0, tokens if mode == "global_token" else examples)
        # Local accumulators: name -> [loss sum, target tokens]
        self.by_key: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.real_tokens = 0
        self.all_tokens = 0
        self.examples = 0

    def loss_for_backward(self, losses: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The scalar whose gradient is this micro-batch's share of the global-batch gradient."""
        if self.mode == "global_token":
            total = losses.sum()
        else:
            sums, counts = segment_sums(losses, batch)
            total = (sums[:, 1:] / counts[:, 1:].clamp(min=1)).sum()
        return total * (self.world_size / self.denominator)

    def record(self, losses: torch.Tensor, batch: dict[str, Any]) -> None:
        """Accumulate detached losses per task, sub-mixture and format for logging."""
        sums, counts = segment_sums(losses.float(), batch)
        sums, counts = sums.tolist(), counts.tolist()
        for row, segments in enumerate(batch["meta"]):
            for s, info in enumerate(segments, start=1):
                loss, n = sums[row][s], counts[row][s]
                for key in (f"task/{info['task']}", f"group/{info['group']}", f"format/{format_kind(info['format'])}"):
                    acc = self.by_key[key]
                    acc[0] += loss
                    acc[1] += n
                self.examples += 1
        seg = label_segments(batch)
        self.real_tokens += int((batch["segment_ids"] > 0).sum()) + (
            int((seg > 0).sum()) if "decoder_segment_ids" in batch else 0
        )
        self.all_tokens += batch["segment_ids"].numel() + (seg.numel() if "decoder_segment_ids" in batch else 0)

    def summary(self, top_tasks: set[str]) -> dict[str, float]:
        """Global figures for TensorBoard (collective: every rank must call it)."""
        local = {k: v for k, v in self.by_key.items() if not k.startswith("task/") or k[5:] in top_tasks}
        gathered: list[Any] = [None] * self.world_size
        payload = (local, self.real_tokens, self.all_tokens, self.examples)
        if dist.is_initialized():
            dist.all_gather_object(gathered, payload)
        else:
            gathered = [payload]
        merged: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for part, *_ in gathered:
            for key, (loss, n) in part.items():
                merged[key][0] += loss
                merged[key][1] += n
        real = sum(g[1] for g in gathered)
        total = sum(g[2] for g in gathered)
        out = {f"loss/{k}": loss / n for k, (loss, n) in merged.items() if n > 0}
        loss_sum = sum(v[0] for k, v in merged.items() if k.startswith("group/"))
        tokens = sum(v[1] for k, v in merged.items() if k.startswith("group/"))
        out["train/loss"] = loss_sum / max(tokens, 1.0)
        out["train/padding_efficiency"] = real / max(total, 1)
        out["_tokens"] = float(real)
        out["_examples"] = float(sum(g[3] for g in gathered))
        return out


def _examples_with_targets(batch: dict[str, Any]) -> int:
    _, counts = segment_sums(torch.zeros(batch["labels"].shape), batch)
    return int((counts[:, 1:] > 0).sum())
