"""Model-side evaluation: summed target log-likelihoods and greedy generation, batched.

Both take token ids, never text, and a whole batch at a time: a decoder feeds
every prefix the batch's (prompt, option) sequences share once (token tries,
``launcher/evaluation/prefix_trie.py``, several per row), after the keys and values of
the prefix a whole task shares (MMLU's header and exemplars: computed once per task),
so MMLU's four one-token options cost one position per question; T5 encodes each
prompt once and decodes its options side by side. A decoder generates in its own
greedy loop over one preallocated KV cache, each row leaving the batch at the step
it ends (EOS or a stop string); T5 in one ``generate`` call for the batch. One
option (or prompt) per call is the naive loop (one forward per option, one
``generate`` per example) that ``benchmarks/eval.py`` compares against.

Inputs are laid out as training lays them out: a decoder reads ``prompt +
target`` with the target scored from the prompt's last token on; T5's encoder
reads ``prompt + EOS`` and its decoder starts from ``decoder_start_token_id``.
Which tokens an answer option is scored by is the scoring convention
(:class:`Convention`, ``--convention``): ``t5x`` scores the option's own tokens
plus the EOS training ended every target with, summed (T5X/FLAN); ``lm-eval``
scores the continuation as lm-evaluation-harness builds it: the context's
trailing whitespace moves to the continuation ``" " + option``, a decoder's
continuation is the tokens of ``context + continuation`` after the context's
own tokens, T5's is the continuation encoded alone, and no EOS. Defaults
follow what each architecture's users compare against: T5 ``t5x``, decoders
``lm-eval``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers import (
    DynamicCache, EncoderDecoderCache, GenerationConfig, StaticCache, StoppingCriteria, StoppingCriteriaList,
)

from flanforge.errors import UserError, did_you_mean
from flanforge.model.attention import segment_mask, tree_mask
from flanforge.launcher.evaluation.prefix_trie import Ids, Read, Request, Trie, pack

MASK_ELEMENTS = 2**24
"""At most this many ``(row, query, key)`` entries in one decoder forward's ``(B, 1, T, T)`` mask: a batch
of long rows (few-shot prompts) is split over several forwards."""


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


def _chunks(lengths: Sequence[int], past: int = 0) -> list[list[int]]:
    """Consecutive rows (their indices) whose padded ``(B, 1, T, past + T)`` mask stays within :data:`MASK_ELEMENTS`."""
    chunks: list[list[int]] = []
    width = 0
    for r, length in enumerate(lengths):
        if chunks and (len(chunks[-1]) + 1) * max(width, length) * (past + max(width, length)) <= MASK_ELEMENTS:
            chunks[-1].append(r)
            width = max(width, length)
        else:
            chunks.append([r])
            width = length
    return chunks


def _summed_logprobs(logits: torch.Tensor, reads: Sequence[tuple[int, list[int], list[int]]]) -> list[float]:
    """Per read ``(row, positions, targets)``: the sum of ``log_softmax(logits[row, position])[target]``."""
    device = logits.device
    rows = torch.as_tensor([r for r, at, _ in reads for _ in at], device=device)
    cols = torch.as_tensor([c for _, at, _ in reads for c in at], device=device)
    targets = torch.as_tensor([t for _, _, ts in reads for t in ts], device=device)
    logp = logits[rows, cols].float().log_softmax(-1).gather(1, targets[:, None])[:, 0]  # (N,)
    owner = torch.repeat_interleave(torch.arange(len(reads), device=device),
                                    torch.as_tensor([len(at) for _, at, _ in reads], device=device))
    return torch.zeros(len(reads), dtype=torch.float64, device=device).index_add_(0, owner, logp.double()).tolist()


class StopOnStrings(StoppingCriteria):
    """Marks a row done once its generated text contains one of ``stops`` (per-row, as ``generate`` asks)."""

    def __init__(self, stops: Sequence[str], decode: Callable[[list[int]], str], start: int):
        self.stops, self.decode, self.start = tuple(stops), decode, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = [any(s in self.decode(row[self.start:].tolist()) for s in self.stops) for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


Encode = Callable[[list[str]], list[list[int]]]
"""A tokenizer's ``encode_batch``: texts to ids without special tokens."""


class Convention:
    """How rank classification turns a prompt and its answer options into the token ids it scores."""

    name: str
    description: str
    """What is scored, in a few words (report.md says it)."""

    def context(self, prompt: str) -> str:
        """The text the options are scored after (its ids are the request's prompt)."""
        return prompt

    def continuations(self, encode: Encode, prompt: str, options: Sequence[str], arch: str, eos_id: int
                      ) -> list[list[int]]:
        """The ids scored for each option after ``encode([self.context(prompt)])``."""
        raise NotImplementedError


class T5XConvention(Convention):
    """The option's tokens plus EOS, as training ends every target (T5X/FLAN)."""

    name = "t5x"
    description = "each option's tokens plus EOS, summed"

    def continuations(self, encode, prompt, options, arch, eos_id):
        return with_eos(encode, options, eos_id)


class LMEvalConvention(Convention):
    """lm-evaluation-harness's ``_encode_pair``: continuation ``" " + option`` (its default target delimiter),
    the context's trailing whitespace moved onto it, no EOS."""

    name = "lm-eval"
    description = "the continuation ' option' alone, tokenised as lm-evaluation-harness does, no EOS"
    delimiter = " "

    def context(self, prompt):
        return prompt.rstrip()

    def continuations(self, encode, prompt, options, arch, eos_id):
        context = self.context(prompt)
        texts = [prompt[len(context):] + self.delimiter + o for o in options]
        if arch == "t5":  # seq2seq: the continuation encoded on its own
            return encode(texts)
        cut = len(encode([context])[0])
        return [ids[cut:] for ids in encode([context + t for t in texts])]


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (T5XConvention(), LMEvalConvention())}
"""By name, in the order of ``SCORING_CONVENTIONS`` (the names the config checks ``eval.convention`` against)."""
DEFAULT_CONVENTION = {"t5": "t5x", "decoder": "lm-eval"}
"""Per architecture: what its users compare against (FLAN-T5's T5X; decoders' lm-evaluation-harness)."""


def get_convention(name: str | None, arch: str) -> Convention:
    """The convention ``name`` (None: the architecture's default); an unknown name lists the valid ones."""
    name = DEFAULT_CONVENTION[arch] if name is None else name
    if name not in CONVENTIONS:
        raise UserError(f"unknown scoring convention '{name}' (conventions: {', '.join(CONVENTIONS)})"
                        f"{did_you_mean(name, CONVENTIONS)}")
    return CONVENTIONS[name]


def with_eos(encode: Encode, texts: Sequence[str], eos_id: int) -> list[list[int]]:
    """Targets as training scores them: each text's ids and EOS."""
    return [ids + [eos_id] for ids in encode(list(texts))]


@dataclass
class Scorer:
    """A Hugging Face model (``arch`` ``decoder`` or ``t5``) and the ids it pads and stops with."""

    model: torch.nn.Module
    arch: str
    pad_id: int
    eos_id: int
    device: torch.device = torch.device("cpu")
    convention: Convention | None = None
    """Which tokens an option is scored by; None: the architecture's default (:data:`DEFAULT_CONVENTION`)."""
    synced_gpus: bool = False
    """Every rank calls ``generate`` at once and keeps stepping until all are done, and makes as many
    rank-classification forwards as the rank that needs most (a ZeRO-3 model)."""

    def __post_init__(self) -> None:
        if self.arch not in ("decoder", "t5"):
            raise ValueError(f"arch must be 'decoder' or 't5', got {self.arch!r}")
        if self.convention is None:
            self.convention = get_convention(None, self.arch)
        self._prefix: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @torch.no_grad()
    def loglikelihoods(self, requests: Sequence[Request], shared: int = 0) -> list[list[float]]:
        """Summed log-likelihood of every option given its prompt: ``[(prompt, [option, ...]), ...]``.

        Batched: a decoder feeds the batch's ``prompt + option[:-1]`` sequences as token tries
        (``launcher/evaluation/prefix_trie.py``: every shared prefix once, short tries packed into one row); a T5
        row encodes the prompt once and decodes ``<start> o1 <start> o2 ...`` block-diagonally.

        ``shared``: the first ``shared`` tokens of every prompt are the same (a task's instruction and
        exemplars). A decoder then computes their keys and values once, keeps them for the next call
        with the same tokens, and feeds the tries of the rest after them (not under ``synced_gpus``:
        every rank makes the same forwards). One scorer holds one model state: the kept keys and values
        belong to its weights.
        """
        if any(not o for _, opts in requests for o in opts) or any(not opts for _, opts in requests):
            raise ValueError("every request needs options, and every option at least one token")
        if self.arch == "t5":
            return self._t5_loglikelihoods(requests)
        if any(not p for p, _ in requests):
            raise ValueError("a decoder prompt needs at least one token")
        # The option's first token is read at the prompt's last position: at least one token stays in the tries.
        shared = 0 if self.synced_gpus else max(0, min(shared, *(len(p) - 1 for p, _ in requests)))
        past = self._past(requests[0][0][:shared]) if shared else None
        requests = [(p[shared:], o) for p, o in requests]
        rows, reads = pack(requests, self.key_cost, past=shared)
        flat = [read for request_reads in reads for read in request_reads]
        sums: list[float] = [0.0] * len(flat)
        chunks = _chunks([len(row) for row in rows], shared)
        if self.synced_gpus:  # as many forwards on every rank (each gathers the weights): repeats of the first
            count = torch.tensor([len(chunks)], device=self.device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
            chunks += [chunks[0]] * (int(count) - len(chunks))
        for chunk in chunks:
            mine = [i for i, read in enumerate(flat) if read.row in chunk]
            for i, value in zip(mine, self._forward_tries(rows, chunk, [flat[i] for i in mine], past)):
                sums[i] = value
        it = iter(sums)
        return [[next(it) for _ in request_reads] for request_reads in reads]

    @functools.cached_property
    def key_cost(self) -> float:
        """Work of attending to one key over a position's work in one layer's linear layers: about
        ``4 d`` over ``2 x`` the layer's parameters (embeddings aside; ZeRO-3 shards counted whole)."""
        embeddings = {id(m.weight) for m in (self.model.get_input_embeddings(), self.model.get_output_embeddings())
                      if m is not None}
        config = self.model.config
        params = sum(getattr(p, "ds_numel", p.numel()) for p in self.model.parameters() if id(p) not in embeddings)
        return 2 * config.hidden_size * config.num_hidden_layers / params

    def positions(self, requests: Sequence[Request]) -> int:
        """Token positions (padding included) that :meth:`loglikelihoods` feeds the model for ``requests``
        (T5: encoder and decoder together)."""
        if self.arch == "t5":
            return len(requests) * (max(len(p) for p, _ in requests) + 1 + max(sum(map(len, o)) for _, o in requests))
        rows, _ = pack(requests, self.key_cost)
        return sum(len(chunk) * max(len(rows[r]) for r in chunk) for chunk in _chunks([len(row) for row in rows]))

    def _past(self, tokens: Ids) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the keys and values (each (1, H, P, D)) of the sequence ``tokens`` (P of them),
        computed once for consecutive calls with the same tokens."""
        if self._prefix is None or self._prefix[0] != tuple(tokens):
            ids = torch.as_tensor([list(tokens)], device=self.device)
            cache = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).cache
            self._prefix = (tuple(tokens), [(layer.keys, layer.values) for layer in cache.layers])
        return self._prefix[1]

    def _forward_tries(self, rows: list[Trie], chunk: list[int], reads: list[Read],
                       past: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> list[float]:
        """The summed log-likelihoods of ``reads`` from one forward over the trie rows ``chunk``, after the
        keys and values ``past`` (per layer, of a sequence every row continues) when given.

        Each row's read nodes go last and rows are left-padded, so the LM head runs on the last
        ``keep`` positions only; attention follows the tries (:func:`tree_mask`) and sees all of ``past``.
        """
        scored = {r: sorted({n for read in reads if read.row == r for n in read.nodes}) for r in chunk}
        width, keep = max(len(rows[r]) for r in chunk), max(len(nodes) for nodes in scored.values())
        ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(chunk), width), dtype=torch.long)
        parents = torch.full((len(chunk), width), -1, dtype=torch.long)
        columns: dict[int, list[int]] = {}
        for b, r in enumerate(chunk):
            row, last = rows[r], set(scored[r])
            order = [n for n in range(len(row)) if n not in last] + scored[r]  # (len(row),)
            shift = width - len(row)
            columns[r] = col = [0] * len(row)
            for c, n in enumerate(order):
                col[n] = shift + c
            ids[b, shift:] = torch.as_tensor([row.tokens[n] for n in order])
            positions[b, shift:] = torch.as_tensor([row.depths[n] for n in order])
            parents[b, shift:] = torch.as_tensor([col[row.parents[n]] if row.parents[n] >= 0 else -1 for n in order])
        mask = tree_mask(parents.to(self.device), positions, dtype=next(self.model.parameters()).dtype)
        cache = None
        if past is not None:  # every position also sees the P past ones: positions and mask shift by P
            n = past[0][0].shape[2]
            positions = positions + n
            mask = torch.cat([mask.new_zeros(*mask.shape[:3], n), mask], dim=-1)  # (B, 1, T, P + T)
            cache = DynamicCache(ddp_cache_data=[(k.expand(len(chunk), -1, -1, -1), v.expand(len(chunk), -1, -1, -1))
                                                 for k, v in past])
        logits = self.model(input_ids=ids.to(self.device), position_ids=positions.to(self.device), attention_mask=mask,
                            cache=cache, use_cache=cache is not None, logits_to_keep=keep).logits  # (B, keep, V)
        b_of = {r: b for b, r in enumerate(chunk)}
        return _summed_logprobs(logits, [(b_of[read.row], [columns[read.row][n] - (width - keep) for n in read.nodes],
                                          read.targets) for read in reads])

    def _t5_loglikelihoods(self, requests: Sequence[Request]) -> list[list[float]]:
        """One row per request: the encoder reads ``prompt + EOS``, the decoder ``<start> o1[:-1] <start> o2[:-1] ...``."""
        dtype = next(self.model.parameters()).dtype
        start = self.model.config.decoder_start_token_id
        dec_ids, dec_seg, reads = [], [], []
        for i, (_, options) in enumerate(requests):
            ids, seg = [], []
            for s, option in enumerate(options, start=1):
                reads.append((i, list(range(len(ids), len(ids) + len(option))), list(option)))
                ids, seg = ids + [start, *option[:-1]], seg + [s] * len(option)
            dec_ids.append(ids)
            dec_seg.append(seg)
        ids, _ = _pad(dec_ids, self.pad_id)
        seg = _pad(dec_seg, 0)[0].to(self.device)
        enc, enc_mask = _pad([list(p) + [self.eos_id] for p, _ in requests], self.pad_id)
        # T5's decoder bias depends on relative positions only: packed options see the same distances.
        dec_mask = segment_mask(seg, seg, causal=True, dtype=dtype)
        logits = self.model(input_ids=enc.to(self.device), attention_mask=enc_mask.to(self.device),
                            decoder_input_ids=ids.to(self.device), decoder_attention_mask=dec_mask,
                            use_cache=False).logits
        it = iter(_summed_logprobs(logits, reads))
        return [[next(it) for _ in options] for _, options in requests]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Ids], max_new_tokens: int, stops: Sequence[str] = (),
                 decode: Callable[[list[int]], str] | None = None, min_new_tokens: int = 0) -> list[list[int]]:
        """Greedy continuations of ``prompts``, batched with a KV cache, each cut at EOS.

        With ``stops`` (and ``decode``, ids to text) a row also ends once its text contains a stop string;
        cutting the text there is the caller's. ``min_new_tokens`` holds EOS back that long (benchmarks:
        the same work on every path). A decoder runs :meth:`_decode`, T5 :meth:`_t5_decode` (a finished row
        leaves the batch); every rank in lockstep (``synced_gpus``) one ``generate`` call.
        """
        if not self.synced_gpus:
            loop = self._decode if self.arch == "decoder" else self._t5_decode
            return loop(prompts, max_new_tokens, stops, decode, min_new_tokens)
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

    def _decode(self, prompts: Sequence[Ids], max_new_tokens: int, stops: Sequence[str],
                decode: Callable[[list[int]], str] | None, min_new_tokens: int) -> list[list[int]]:
        """A decoder's greedy loop: left-padded prompts, one preallocated KV cache (no copy per step), and
        each row taken out of the batch (and of the cache) at the step it ends: EOS, a stop string or
        ``max_new_tokens``; the rows left run on, so no step is spent on a finished row."""
        dtype = next(self.model.parameters()).dtype
        ids, real = _pad(prompts, self.pad_id, left=True)  # (B, T)
        width, total = ids.shape[1], ids.shape[1] + max_new_tokens
        keys = torch.cat([real, real.new_zeros(len(prompts), max_new_tokens)], dim=1).to(self.device)  # (B, T + N)
        cache = StaticCache(config=self.model.config, max_cache_len=total)
        mask = segment_mask(real.to(self.device), keys, causal=True, dtype=dtype)  # (B, 1, T, T + N)
        positions = (real.cumsum(-1) - 1).clamp(min=0).to(self.device)  # (B, T)
        live = list(range(len(prompts)))  # the batch's rows: indices into prompts
        out: list[list[int]] = [[] for _ in prompts]
        inputs = ids.to(self.device)
        for step in range(max_new_tokens):
            logits = self.model(input_ids=inputs, position_ids=positions, attention_mask=mask, cache=cache,
                                use_cache=True, logits_to_keep=1).logits[:, -1]  # (b, V)
            tokens, done = self._step(logits, step, live, out, max_new_tokens, stops, decode, min_new_tokens)
            if len(done) == len(live):
                break
            if done:  # finished rows leave the batch and the cache
                keep = torch.as_tensor([b for b in range(len(live)) if b not in done], device=self.device)
                live = [live[b] for b in keep.tolist()]
                keys, positions = keys[keep], positions[keep]
                tokens = [tokens[b] for b in keep.tolist()]
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys[keep], layer.values[keep]
            keys[:, width + step] = 1
            inputs = torch.as_tensor(tokens, device=self.device)[:, None]  # (b, 1)
            positions = positions[:, -1:] + 1
            mask = torch.zeros(keys.shape, dtype=dtype, device=self.device).masked_fill_(
                keys == 0, torch.finfo(dtype).min)[:, None, None]  # (b, 1, 1, T + N)
        return out


    def _t5_decode(self, prompts: Sequence[Ids], max_new_tokens: int, stops: Sequence[str],
                   decode: Callable[[list[int]], str] | None, min_new_tokens: int) -> list[list[int]]:
        """T5's greedy loop: the encoder once, then the decoder a token a step with its cache (self- and
        cross-attention), each row taken out of the batch, the cache and the encoder's output at the step it
        ends, as :meth:`_decode` does."""
        ids, mask = _pad([list(p) + [self.eos_id] for p in prompts], self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        start = self.model.config.decoder_start_token_id
        inputs = torch.full((len(prompts), 1), self.pad_id if start is None else start, device=self.device)
        live = list(range(len(prompts)))
        out: list[list[int]] = [[] for _ in prompts]
        for step in range(max_new_tokens):
            logits = self.model(encoder_outputs=(encoded,), attention_mask=mask, decoder_input_ids=inputs,
                                cache=cache, use_cache=True).logits[:, -1]  # (b, V)
            tokens, done = self._step(logits, step, live, out, max_new_tokens, stops, decode, min_new_tokens)
            if len(done) == len(live):
                break
            if done:
                keep = torch.as_tensor([b for b in range(len(live)) if b not in done], device=self.device)
                live, tokens = [live[b] for b in keep.tolist()], [tokens[b] for b in keep.tolist()]
                encoded, mask = encoded[keep], mask[keep]
                cache.batch_select_indices(keep)
            inputs = torch.as_tensor(tokens, device=self.device)[:, None]
        return out

    def _step(self, logits: torch.Tensor, step: int, live: list[int], out: list[list[int]], max_new_tokens: int,
              stops: Sequence[str], decode: Callable[[list[int]], str] | None,
              min_new_tokens: int) -> tuple[list[int], list[int]]:
        """One greedy step of the rows ``live`` (their ``logits``): each row's token appended to ``out`` unless
        it is EOS; returns the tokens and the batch positions of the rows that end here (EOS, a stop string,
        ``max_new_tokens``)."""
        if step < min_new_tokens:
            logits[:, self.eos_id] = float("-inf")
        tokens = logits.argmax(-1).tolist()
        done = []
        for b, (row, token) in enumerate(zip(live, tokens)):
            if token != self.eos_id:
                out[row].append(token)
            if (token == self.eos_id or step + 1 == max_new_tokens
                    or (stops and decode and any(s in decode(out[row]) for s in stops))):
                done.append(b)
        return tokens, done


def max_length(model, arch: str) -> int | None:
    """Tokens a decoder's positions reach (prompt + answer); None for T5 (relative positions)."""
    return getattr(model.config, "max_position_embeddings", None) if arch == "decoder" else None


def dense_attention(model, device_type: str) -> str | None:
    """Make ``model`` attend with an implementation that takes the dense masks evaluation builds (flex and
    segments take none): ``auto``'s evaluation choice. Returns the implementation it replaced, or None."""
    from flanforge.model import attention

    used = attention.implementation_of(model)
    if isinstance(attention.get(used), attention.DenseMask):
        return None
    attention.use(model, attention.resolve("auto", device_type, training=False))
    return used
