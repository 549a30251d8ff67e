"""Model-side evaluation: summed target log-likelihoods and greedy generation, batched.

Both take token ids, never text, and a whole batch at a time: the options of
an example share one row after one copy of its prompt, and several examples
go through one forward; generation is one ``generate`` call with the KV cache
for the batch. One option (or prompt) per call is the naive loop (one forward
per option, one ``generate`` per example) that ``benchmarks/eval.py`` compares against.

Inputs are laid out as training lays them out (``mixtures/packing.py``, ``flanforge/binpack.py``): a
decoder reads ``prompt + target`` with the target scored from the prompt's
last token on; T5's encoder reads ``prompt + EOS`` and its decoder starts from
``decoder_start_token_id``. Targets include the EOS training ended them with,
as T5X scores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from flanforge.binpack import first_fit_decreasing
from flanforge.model.attention import segment_mask, shared_prefix_mask

Ids = Sequence[int]


def _append(cols: tuple[list[int], ...], layout, part: slice, example: int) -> None:
    """Append ``part`` of one example's layout (ids, segments, positions) to a row's columns, with its example id."""
    for col, values in zip(cols, layout[:3]):
        col += values[part]
    cols[3].extend([example] * len(layout[0][part]))


def _pad(rows: Sequence[Ids], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)``, both (B, T), padded on the right (or the left)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


class StopOnStrings(StoppingCriteria):
    """Marks a row done once its generated text contains one of ``stops`` (per-row, as ``generate`` asks)."""

    def __init__(self, stops: Sequence[str], decode: Callable[[list[int]], str], start: int):
        self.stops, self.decode, self.start = tuple(stops), decode, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = [any(s in self.decode(row[self.start:].tolist()) for s in self.stops) for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass
class Scorer:
    """A Hugging Face model (``arch`` ``decoder`` or ``t5``) and the ids it pads and stops with."""

    model: torch.nn.Module
    arch: str
    pad_id: int
    eos_id: int
    device: torch.device = torch.device("cpu")
    synced_gpus: bool = False
    """Every rank calls ``generate`` at once and keeps stepping until all are done (a ZeRO-3 model)."""

    def __post_init__(self) -> None:
        if self.arch not in ("decoder", "t5"):
            raise ValueError(f"arch must be 'decoder' or 't5', got {self.arch!r}")

    @torch.no_grad()
    def loglikelihoods(self, requests: Sequence[tuple[Ids, Sequence[Ids]]]) -> list[list[float]]:
        """Summed log-likelihood of every option given its prompt: ``[(prompt, [option, ...]), ...]``.

        One forward for the whole batch: the prompt is computed once and its options follow it in
        the same row, each seeing the prompt and itself only (a decoder row is ``prompt o1 o2 ...``
        under :func:`shared_prefix_mask`, several short examples packed into one row; a T5 row
        encodes the prompt once and decodes ``<start> o1 <start> o2 ...`` block-diagonally).
        """
        if any(not o for _, opts in requests for o in opts) or any(not opts for _, opts in requests):
            raise ValueError("every request needs options, and every option at least one token")
        if self.arch == "decoder" and any(not p for p, _ in requests):
            raise ValueError("a decoder prompt needs at least one token")
        layouts = [self._layout(list(p), [list(o) for o in opts]) for p, opts in requests]
        if self.arch == "decoder":
            logits, spans = self._forward_decoder(layouts, [len(p) for p, _ in requests])
        else:
            logits, spans = self._forward_t5(requests, layouts)
        out = []
        for request_spans in spans:
            out.append([])
            for row, at, target in request_spans:
                logp = logits[row, at].float().log_softmax(-1)  # (len(target), V)
                out[-1].append(float(logp.gather(1, torch.as_tensor(target, device=logp.device)[:, None]).sum()))
        return out

    def _layout(self, prompt: list[int], options: list[list[int]]):
        """One row: ``(ids, segment ids, position ids, [(positions predicting option, option), ...])``.

        Decoder: ``prompt o1 o2 ...``, segment 1 the prompt, each option's positions continuing the
        prompt's; option token j is predicted at the position before it (the prompt's last for j = 0).
        T5 (decoder side; the prompt goes to the encoder): ``<start> o1[:-1] <start> o2[:-1] ...``.
        """
        t5 = self.arch == "t5"
        ids, seg, pos, spans = ([], [], [], []) if t5 else (list(prompt), [1] * len(prompt), list(range(len(prompt))), [])
        for s, option in enumerate(options, start=2):
            at = list(range(len(ids), len(ids) + len(option)))
            piece = [self.model.config.decoder_start_token_id, *option[:-1]] if t5 else option
            spans.append((at if t5 else [len(prompt) - 1, *at[:-1]], option))
            start = 0 if t5 else len(prompt)
            ids, seg, pos = ids + piece, seg + [s] * len(piece), pos + list(range(start, start + len(piece)))
        return ids, seg, pos, spans

    def _forward_decoder(self, layouts, prompt_lengths: list[int]):
        """Logits of packed decoder rows and, per request, ``[(row, logit indices, option), ...]``.

        Whole examples are packed into rows (first fit, longest first, up to the longest example's
        length): a row holds its examples' prompts but their last tokens, then each example's last
        prompt token and options, under :func:`shared_prefix_mask` with example ids. Left padding puts
        every scored position at the row's end, so the LM head runs on the last ``keep`` positions only.
        """
        longest = max(len(layout[0]) for layout in layouts)
        rows, starts, spans = [], [], [[] for _ in layouts]
        for members in first_fit_decreasing([[len(layout[0])] for layout in layouts], [longest]):
            cols: tuple[list[int], ...] = ([], [], [], [])  # ids, segments, positions, example ids
            for i in members:
                _append(cols, layouts[i], slice(0, prompt_lengths[i] - 1), i + 1)
            starts.append(len(cols[0]))
            for i in members:
                offset = len(cols[0]) - (prompt_lengths[i] - 1)
                spans[i] = [(len(rows), [p + offset for p in at], option) for at, option in layouts[i][3]]
                _append(cols, layouts[i], slice(prompt_lengths[i] - 1, None), i + 1)
            rows.append(cols)
        keep = max(len(cols[0]) - start for cols, start in zip(rows, starts))
        ids, seg, pos, examples = (_pad([cols[k] for cols in rows], 0 if k else self.pad_id, left=True)[0].to(self.device)
                                   for k in range(4))
        mask = shared_prefix_mask(seg, examples, dtype=next(self.model.parameters()).dtype)
        logits = self.model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False,
                            logits_to_keep=keep).logits
        shift = [keep - len(cols[0]) for cols in rows]
        return logits, [[(r, [p + shift[r] for p in at], option) for r, at, option in s] for s in spans]

    def _forward_t5(self, requests, layouts):
        """Logits of one row per request and, per request, ``[(row, logit indices, option), ...]``."""
        dtype = next(self.model.parameters()).dtype
        ids, _ = _pad([layout[0] for layout in layouts], self.pad_id)
        seg, _ = _pad([layout[1] for layout in layouts], 0)
        enc, enc_mask = _pad([list(p) + [self.eos_id] for p, _ in requests], self.pad_id)
        # T5's decoder bias depends on relative positions only: packed options see the same distances.
        dec_mask = segment_mask(seg.to(self.device), seg.to(self.device), causal=True, dtype=dtype)
        logits = self.model(input_ids=enc.to(self.device), attention_mask=enc_mask.to(self.device),
                            decoder_input_ids=ids.to(self.device), decoder_attention_mask=dec_mask,
                            use_cache=False).logits
        return logits, [[(i, at, option) for at, option in layout[3]] for i, layout in enumerate(layouts)]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Ids], max_new_tokens: int, stops: Sequence[str] = (),
                 decode: Callable[[list[int]], str] | None = None, min_new_tokens: int = 0) -> list[list[int]]:
        """Greedy continuations of ``prompts`` (one batched ``generate`` with the KV cache), each cut at EOS.

        With ``stops`` (and ``decode``, ids to text) a row also ends once its text contains a stop string;
        cutting the text there is the caller's. ``min_new_tokens`` holds EOS back that long (benchmarks:
        the same work on every path).
        """
        if self.arch == "decoder":
            ids, mask = _pad(prompts, self.pad_id, left=True)  # left: new tokens follow every prompt directly
        else:
            ids, mask = _pad([list(p) + [self.eos_id] for p in prompts], self.pad_id)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False, num_beams=1, use_cache=True,
            eos_token_id=self.eos_id, pad_token_id=self.pad_id,
            decoder_start_token_id=getattr(self.model.config, "decoder_start_token_id", None),
        )
        skip = ids.shape[1] if self.arch == "decoder" else 1  # T5's output starts with the start token
        criteria = StoppingCriteriaList([StopOnStrings(stops, decode, skip)] if stops and decode else [])
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  generation_config=config, stopping_criteria=criteria, synced_gpus=self.synced_gpus)
        rows = []
        for row in out[:, skip:].tolist():
            rows.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return rows
