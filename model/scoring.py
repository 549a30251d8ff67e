"""Model-side evaluation: summed target log-likelihoods and greedy generation, batched.

Both take token ids, never text, and a whole batch at a time: every option of
an example goes through one forward with the others (and with other examples'
options), and generation is one ``generate`` call with the KV cache for the
batch. A batch of one is the naive loop (one forward per option, one
``generate`` per example) that ``benchmarks/eval.py`` compares against.

Inputs are laid out as training lays them out (``mixtures/packing.py``): a
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

Ids = Sequence[int]


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

    def __post_init__(self) -> None:
        if self.arch not in ("decoder", "t5"):
            raise ValueError(f"arch must be 'decoder' or 't5', got {self.arch!r}")

    @torch.no_grad()
    def loglikelihoods(self, pairs: Sequence[tuple[Ids, Ids]]) -> list[float]:
        """Summed log-likelihood of each ``target`` given its ``prompt``, all pairs in one forward."""
        if any(not t for _, t in pairs) or (self.arch == "decoder" and any(not p for p, _ in pairs)):
            raise ValueError("every target (and, for a decoder, every prompt) needs at least one token")
        if self.arch == "decoder":
            ids, mask = _pad([list(p) + list(t) for p, t in pairs], self.pad_id)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                use_cache=False).logits  # (B, T, V)
            starts = [len(p) - 1 for p, _ in pairs]  # logits[t] predicts token t + 1
        else:
            enc, enc_mask = _pad([list(p) + [self.eos_id] for p, _ in pairs], self.pad_id)
            start = self.model.config.decoder_start_token_id
            dec, dec_mask = _pad([[start, *t[:-1]] for _, t in pairs], self.pad_id)
            logits = self.model(input_ids=enc.to(self.device), attention_mask=enc_mask.to(self.device),
                                decoder_input_ids=dec.to(self.device),
                                decoder_attention_mask=dec_mask.to(self.device), use_cache=False).logits
            starts = [0] * len(pairs)
        out = []
        for i, (_, target) in enumerate(pairs):
            rows = logits[i, starts[i]:starts[i] + len(target)].float().log_softmax(-1)  # (len(target), V)
            out.append(float(rows.gather(1, torch.as_tensor(list(target), device=rows.device)[:, None]).sum()))
        return out

    @torch.no_grad()
    def generate(self, prompts: Sequence[Ids], max_new_tokens: int, stops: Sequence[str] = (),
                 decode: Callable[[list[int]], str] | None = None) -> list[list[int]]:
        """Greedy continuations of ``prompts`` (one batched ``generate`` with the KV cache), each cut at EOS.

        With ``stops`` (and ``decode``, ids to text) a row also ends once its text contains a stop string;
        cutting the text there is the caller's.
        """
        if self.arch == "decoder":
            ids, mask = _pad(prompts, self.pad_id, left=True)  # left: new tokens follow every prompt directly
        else:
            ids, mask = _pad([list(p) + [self.eos_id] for p in prompts], self.pad_id)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
            eos_token_id=self.eos_id, pad_token_id=self.pad_id,
            decoder_start_token_id=getattr(self.model.config, "decoder_start_token_id", None),
        )
        skip = ids.shape[1] if self.arch == "decoder" else 1  # T5's output starts with the start token
        criteria = StoppingCriteriaList([StopOnStrings(stops, decode, skip)] if stops and decode else [])
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  generation_config=config, stopping_criteria=criteria)
        rows = []
        for row in out[:, skip:].tolist():
            rows.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return rows
