"""Packing tokenised examples into fixed-length rows.

A :class:`Packer` applies the over-length policy to one example, packs a list
of examples into rows with first-fit decreasing, and lays a row out as arrays:

decoder (``arch="decoder"``), one sequence per row, examples back to back::

    input_ids     i i i t t E | i i t E | 0 0      (E = EOS, 0 = pad)
    segment_ids   1 1 1 1 1 1 | 2 2 2 2 | 0 0
    position_ids  0 1 2 3 4 5 | 0 1 2 3 | 0 0
    labels        - - t t E - | - t E - | - -      (- = -100)

``labels[t]`` is the token to predict *at* position ``t`` (already shifted),
and is ``-100`` on padding, on the last token of every example and, unless
``include_inputs_in_loss``, wherever the next token is an input token.

T5 (``arch="t5"``): the encoder side holds the inputs (each ending with EOS)
with ``segment_ids``/``position_ids``; the decoder side holds the targets
(ending with EOS) as ``labels``, and ``decoder_input_ids`` are the targets
shifted right per segment with the pad id as start token.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch

from flanforge.binpack import first_fit_decreasing
from flanforge.constants import IGNORE_INDEX
FITS, TRUNCATED, DROPPED = "fits", "truncated", "dropped"


@dataclass(frozen=True)
class Packer:
    """How examples become rows: architecture, lengths and the over-length policy."""

    arch: Literal["decoder", "t5"]
    seq_len: int
    """Row length (decoder), or encoder row length (T5)."""
    target_len: int
    """Decoder row length for T5; ignored by the decoder arch."""
    overlong: Literal["truncate", "drop"]
    include_inputs_in_loss: bool
    pad_id: int
    eos_id: int

    def __post_init__(self) -> None:
        if self.arch not in ("decoder", "t5"):
            raise ValueError(f"arch must be 'decoder' or 't5', got {self.arch!r}")
        if self.overlong not in ("truncate", "drop"):
            raise ValueError(f"overlong must be 'truncate' or 'drop', got {self.overlong!r}")
        if self.arch == "t5" and self.include_inputs_in_loss:
            raise ValueError("include_inputs_in_loss has no meaning for arch='t5' (inputs go to the encoder)")
        if min(self.seq_len, self.target_len) < 2:
            raise ValueError("seq_len and target_len must be at least 2")

    def fit(self, inputs: Sequence[int], targets: Sequence[int]) -> tuple[list[int], list[int], str]:
        """Append EOS and apply the over-length policy: ``(inputs, targets, FITS|TRUNCATED|DROPPED)``.

        Truncation cuts inputs from the left and keeps the targets; if the
        targets alone do not fit they are cut from the right. The decoder keeps
        at least one input token so the first target token is predicted from
        somewhere.
        """
        inp, tgt = list(inputs), list(targets) + [self.eos_id]
        if self.arch == "t5":
            inp.append(self.eos_id)
            if len(inp) <= self.seq_len and len(tgt) <= self.target_len:
                return inp, tgt, FITS
            if self.overlong == "drop":
                return [], [], DROPPED
            return inp[max(0, len(inp) - self.seq_len):], tgt[: self.target_len], TRUNCATED
        if len(inp) + len(tgt) <= self.seq_len:
            return inp, tgt, FITS
        if self.overlong == "drop":
            return [], [], DROPPED
        keep_in = max(self.seq_len - len(tgt), min(len(inp), 1))
        return inp[len(inp) - keep_in:], tgt[: self.seq_len - keep_in], TRUNCATED

    def sizes(self, inputs: Sequence[int], targets: Sequence[int]) -> tuple[int, ...]:
        """The room an example takes in a row, per row dimension."""
        if self.arch == "t5":
            return (len(inputs), len(targets))
        return (len(inputs) + len(targets),)

    def capacity(self) -> tuple[int, ...]:
        return (self.seq_len, self.target_len) if self.arch == "t5" else (self.seq_len,)

    def pack(self, sizes: Sequence[Sequence[int]]) -> list[list[int]]:
        """First-fit decreasing over ``sizes`` (n, dims) into rows of :meth:`capacity`: lists of example indices."""
        return first_fit_decreasing(sizes, self.capacity())

    def row(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> dict[str, np.ndarray]:
        """Lay out one row from ``(inputs, targets)`` pairs that fit it; arrays of shape (T,)."""
        if self.arch == "t5":
            enc = _segments([inp for inp, _ in examples], self.seq_len, self.pad_id)
            dec = _segments([tgt for _, tgt in examples], self.target_len, self.pad_id)
            shifted = np.full(self.target_len, self.pad_id, dtype=np.int64)
            starts = dec["position_ids"] == 0
            shifted[1:] = dec["input_ids"][:-1]
            shifted[starts] = self.pad_id  # each segment starts from the pad id (T5's start token)
            labels = np.where(dec["segment_ids"] > 0, dec["input_ids"], IGNORE_INDEX)
            return {
                **enc,
                "decoder_input_ids": np.where(dec["segment_ids"] > 0, shifted, self.pad_id),
                "decoder_segment_ids": dec["segment_ids"],
                "decoder_position_ids": dec["position_ids"],
                "labels": labels,
            }
        out = _segments([list(inp) + list(tgt) for inp, tgt in examples], self.seq_len, self.pad_id)
        labels = np.full(self.seq_len, IGNORE_INDEX, dtype=np.int64)
        at = 0
        for inp, tgt in examples:
            n = len(inp) + len(tgt)
            # position t predicts token t+1 of the same example; the last token predicts nothing
            first = at if self.include_inputs_in_loss else at + max(len(inp) - 1, 0)
            labels[first: at + n - 1] = out["input_ids"][first + 1: at + n]
            at += n
        out["labels"] = labels
        return out


def _segments(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Concatenate ``seqs`` into one padded row with segment ids 1..k and restarting positions."""
    ids = np.full(length, pad_id, dtype=np.int64)
    seg = np.zeros(length, dtype=np.int64)
    pos = np.zeros(length, dtype=np.int64)
    at = 0
    for k, seq in enumerate(seqs, start=1):
        n = len(seq)
        if at + n > length:
            raise ValueError(f"examples of {at + n} tokens do not fit a row of {length}")
        ids[at: at + n] = seq
        seg[at: at + n] = k
        pos[at: at + n] = np.arange(n)
        at += n
    return {"input_ids": ids, "segment_ids": seg, "position_ids": pos}


def stack_rows(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack row arrays into (B, T) long tensors."""
    return {key: torch.from_numpy(np.stack([r[key] for r in rows])) for key in rows[0]}


@dataclass
class PackedBatch:
    """One micro-batch of packed rows: the tensors the model reads, and what only the trainer reads.

    ``tensors`` (the model's input, and nothing else): ``input_ids``, ``labels``,
    ``position_ids``, ``segment_ids``, (B, T) long; T5 adds ``decoder_input_ids``,
    ``decoder_segment_ids``, ``decoder_position_ids`` and its ``labels`` are (B, T_dec).
    """

    tensors: dict[str, torch.Tensor]
    meta: list[list[dict[str, Any]]]
    """Per row, per segment: ``{"task", "group", "template_id", "format", "record", "epoch"}``."""
    block: torch.Tensor
    """(B,) the block each row was packed from; with ``row`` and ``block_rows``, for the consumption tracker."""
    row: torch.Tensor
    """(B,) the row's index within its block."""
    block_rows: torch.Tensor
    """(B,) rows its block packs into."""
    counters: dict[str, dict[str, int]]
    """Over-length counts ``{task: {"truncated": n, "dropped": n}}`` of the blocks starting in the batch."""

    def pin_memory(self) -> "PackedBatch":
        """The batch with the model's tensors in pinned host memory (the DataLoader calls it for a GPU)."""
        return dataclasses.replace(self, tensors={k: v.pin_memory() for k, v in self.tensors.items()})
