"""Loss normalisation over the global batch, and the per-task / per-format loss figures.

DeepSpeed averages gradients over the data-parallel ranks, and flanforge calls
``engine.backward(..., scale_wrt_gas=False)``. So for the gradient of the
global batch to be ``sum(token losses) / N`` (N = target tokens of every
micro-batch of the accumulation window on every rank), each target token's
loss is weighted by ``world_size / N`` and each micro-batch's weighted sum is
back-propagated. With ``loss_normalization: sequence`` each example's mean
token loss counts once and N is the number of examples, so a token's weight
is ``world_size / (N * its example's target tokens)`` (T5X's average-per-sequence).

The weights are known before the forward pass, so the model's loss kernel
computes the gradients there (``model/training_forward.py``). Target counts
come from the host-side labels; N is all-reduced on the training device and
the weights are computed there, so normalising forces no host sync.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.distributed as dist

from flanforge.constants import IGNORE_INDEX
from flanforge.mixtures.formats import FORMAT_KINDS, format_kind
from flanforge.mixtures.streaming.packing import PackedBatch
from flanforge.model.training_forward import target_positions

# Per-step figures reduced alongside the per-key loss sums (summed over ranks).
TOTALS = ("real_tokens", "all_tokens", "examples")


def label_segments(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Segment ids aligned with the labels, (B, T)."""
    return tensors["decoder_segment_ids"] if "decoder_segment_ids" in tensors else tensors["segment_ids"]


def segment_counts(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Target tokens per (row, segment), (B, S+1); column 0 is padding and always 0."""
    seg = label_segments(tensors).long()
    target = (tensors["labels"] != IGNORE_INDEX).to(torch.float64)
    n_seg = int(seg.max()) + 1 if seg.numel() else 1
    return torch.zeros(seg.shape[0], n_seg, dtype=torch.float64).scatter_add_(1, seg, target)


class LossKeys:
    """The per-task, per-sub-mixture and per-format loss keys, in one order on every rank."""

    def __init__(self, top_tasks: Iterable[str], groups: Iterable[str]):
        names = ([f"task/{t}" for t in sorted(top_tasks)] + [f"group/{g}" for g in sorted(set(groups))]
                 + [f"format/{k}" for k in FORMAT_KINDS])
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}

    def of_segment(self, info: dict[str, Any]) -> list[int]:
        keys = (f"task/{info['task']}", f"group/{info['group']}", f"format/{format_kind(info['format'])}")
        return [self.index[k] for k in keys if k in self.index]


class LossWindow:
    """One optimizer step's micro-batches: the loss weights, and (on log steps) what the losses were."""

    def __init__(self, micro: list[PackedBatch], mode: str, world_size: int, device: torch.device | str = "cpu"):
        self.mode = mode
        self.device = torch.device(device)
        counts = [segment_counts(b.tensors) for b in micro]  # host tensors: no device sync
        local = torch.tensor([sum(float(c.sum()) for c in counts), sum(float((c[:, 1:] > 0).sum()) for c in counts)],
                             dtype=torch.float64).to(self.device)
        if dist.is_initialized():
            dist.all_reduce(local)  # [target tokens, examples with targets] of the global batch
        denominator = local[0 if mode == "global_token" else 1].clamp(min=1.0)
        self.scale = (world_size / denominator).float()  # 0-d, on the device
        self.sums: torch.Tensor | None = None  # per-key loss sums (device), on log steps
        self.counts: torch.Tensor | None = None  # per-key target tokens, then TOTALS (host)

    def loss_inputs(self, batch: PackedBatch) -> dict[str, torch.Tensor]:
        """``target_index`` and ``loss_weights`` (n,) for the model, on the device."""
        labels = batch.tensors["labels"]
        index = target_positions(labels)  # (n,)
        if self.mode == "global_token":
            factor = torch.ones(index.shape, dtype=torch.float32)
        else:  # each example's tokens share one unit of weight
            seg = label_segments(batch.tensors).reshape(-1)[index]
            slot = index // labels.shape[1] * (int(seg.max()) + 1 if len(seg) else 1) + seg
            factor = 1.0 / torch.bincount(slot)[slot].float()
        weights = factor.to(self.device, non_blocking=True) * self.scale
        return {"target_index": index.to(self.device, non_blocking=True), "loss_weights": weights}

    def record(self, token_losses: torch.Tensor, batch: PackedBatch, keys: LossKeys) -> None:
        """Add this micro-batch's detached losses to the per-key sums (log steps only)."""
        tensors = batch.tensors
        seg = label_segments(tensors).long()
        n_seg = int(seg.max()) + 1 if seg.numel() else 1
        slots = (torch.arange(seg.shape[0])[:, None] * n_seg + seg).reshape(-1)  # (B*T,) row-major segment slot
        seg_sums = torch.zeros(seg.shape[0] * n_seg, device=token_losses.device)
        seg_sums.index_add_(0, slots.to(token_losses.device), token_losses.reshape(-1).float())
        seg_counts = segment_counts(tensors).reshape(-1)
        if self.sums is None:
            self.sums = torch.zeros(len(keys.names), device=token_losses.device)
            self.counts = torch.zeros(len(keys.names) + len(TOTALS), dtype=torch.float64)
        key_ids, seg_ids = [], []
        for row, segments in enumerate(batch.meta):
            for s, info in enumerate(segments, start=1):
                for k in keys.of_segment(info):
                    key_ids.append(k)
                    seg_ids.append(row * n_seg + s)
        key_ids_t, seg_ids_t = torch.tensor(key_ids, dtype=torch.long), torch.tensor(seg_ids, dtype=torch.long)
        self.sums.index_add_(0, key_ids_t.to(self.sums.device), seg_sums[seg_ids_t.to(self.sums.device)])
        self.counts.index_add_(0, key_ids_t, seg_counts[seg_ids_t])
        decoder = "decoder_segment_ids" in tensors
        real = (tensors["segment_ids"] > 0).sum() + ((seg > 0).sum() if decoder else 0)
        total = tensors["segment_ids"].numel() + (seg.numel() if decoder else 0)
        examples = sum(len(segments) for segments in batch.meta)
        self.counts[len(keys.names):] += torch.tensor([float(real), float(total), float(examples)], dtype=torch.float64)

    def summary(self, keys: LossKeys, extra: dict[str, float]) -> dict[str, float]:
        """Global figures for TensorBoard, and ``extra`` summed over ranks: one all-reduce (collective)."""
        assert self.sums is not None, "record() the step's micro-batches before summary()"
        n = len(keys.names)
        packed = torch.cat([self.sums.double(), self.counts.to(self.sums.device),
                            torch.tensor(list(extra.values()), dtype=torch.float64, device=self.sums.device)])
        if dist.is_initialized():
            dist.all_reduce(packed)
        values = packed.tolist()  # the one host sync of a logged step
        sums, counts, totals, extras = values[:n], values[n:2 * n], values[2 * n:2 * n + len(TOTALS)], values[2 * n + len(TOTALS):]
        out = {f"loss/{name}": s / c for name, s, c in zip(keys.names, sums, counts) if c > 0}
        groups = [i for i, name in enumerate(keys.names) if name.startswith("group/")]
        out["train/loss"] = sum(sums[i] for i in groups) / max(sum(counts[i] for i in groups), 1.0)
        real, total, examples = totals
        out["train/padding_efficiency"] = real / max(total, 1.0)
        out["_tokens"] = real
        out["_examples"] = examples
        out.update(zip(extra, extras))
        return out
