"""Evaluation throughput: batched generation and rank classification against the naive loops.

    python benchmarks/eval.py                       # demo-sized decoder
    python benchmarks/eval.py --arch t5 --examples 32
    python benchmarks/eval.py --rank-shots 3        # few-shot rank classification
    python benchmarks/eval.py --rank-bbh ../shared/data/bbh   # BBH multiple choice, 3-shot

Both paths run ``flanforge.launcher.evaluation.scoring.Scorer`` on the same model (the demo's
tiny Llama-style decoder, ~3.5M parameters, or a tiny T5; random init, fp32,
CPU) and the same prompts: validation examples taken in turn from the tasks
of ``--generate-suite`` (``builtin_heldout``'s generated tasks) and
``--rank-suite`` (``builtin_classification``: 2-4 answer options; zero-shot,
or ``--rank-shots K``-shot), rendered by ``flanforge.launcher.evaluation.suites``, or
with ``--rank-bbh DIR`` BIG-Bench Hard's lettered multiple-choice tasks
(3-shot, 8 examples a task), tokenised with a SentencePiece tokenizer
trained here on those tasks: naive is one ``generate`` per example and one
forward per answer option (a batch of one), batched is ``--batch-size``
examples per ``generate`` and ``--batch-size`` examples (all their options)
per rank-classification call (token tries for a decoder, see
``launcher/evaluation/prefix_trie.py``). Generation runs a fixed ``--new-tokens`` with EOS
held back, so both paths make the same number of tokens. Each path is timed
``--rounds`` times, alternating, on the same threads; the speed-ups are of the
medians. ``rank_positions`` counts the token positions each path feeds the
model (padding included). The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from flanforge.model.config import ModelConfig
from flanforge.mixtures import registry
from flanforge.launcher.evaluation.suites import build_suite
from flanforge.launcher.evaluation.tasks import EvalExample
from flanforge.launcher.evaluation import benchmarks
from flanforge.model.load import build_model
from flanforge.launcher.evaluation.scoring import Scorer
from flanforge.model.tokenizer import train_tokenizer

_LETTER = re.compile(r"^(\([A-R]\)) ", re.M)
BBH_PROMPT_TOKENS = 1500
"""BBH prompts longer than this are left out (the demo models have 2,048 positions)."""


def examples(name: str, n: int, rank: bool, count_tokens, shots: int = 0) -> list:
    """``n`` validation examples of ``name``'s tasks scored by rank classification (or by generation),
    taken from the tasks in turn (a fixed shuffle of them); ``shots``: few-shot prompts, as ``flanforge
    eval --formats few_shot --shots K`` renders them."""
    kind = "few_shot" if shots else "zero_shot"
    tasks = [t for t in build_suite(name, kind=kind, shots=shots or None, max_examples=8, count_tokens=count_tokens).tasks
             if (t.metric == "accuracy") == rank]
    random.Random(0).shuffle(tasks)
    picked = [t.examples[i] for i in range(8) for t in tasks if i < len(t.examples)]
    return picked[:n]


def bbh_examples(root: str, n: int, count_tokens, limit: int) -> list:
    """``n`` examples of BIG-Bench Hard's lettered multiple-choice tasks as rank classification: the
    3-shot answer-only prompt of ``flanforge eval --suites bbh:DIR``, options ``(A)``, ``(B)``, ... as
    listed in each question; 8 examples a task, tasks in a fixed shuffle, prompts of at most ``limit`` tokens."""
    tasks = [t for t in benchmarks.bbh_tasks(Path(root), cot=False) if t.examples[0].references[0].startswith("(")]
    random.Random(0).shuffle(tasks)
    picked = []
    for task in tasks:
        fitting = [e for e in task.examples if count_tokens(e.prompt) <= limit][:8]
        picked += [EvalExample(e.prompt, e.references, options, (options.index(e.references[0]),))
                   for e in fitting if e.references[0] in (options := tuple(_LETTER.findall(e.prompt.rsplit("Q: ", 1)[1])))]
    return picked[:n]


def set_up(args):
    rng = random.Random(0)
    tasks = [t for name in (args.generate_suite, args.rank_suite) for t in registry.get_mixture(name).tasks()]
    texts = [t for task in tasks for i in range(5)
             for t in (lambda ex: (ex.inputs, ex.targets))(task.render(task.records("train")[i], rng, i))]
    if args.rank_bbh:  # the tokenizer also sees the benchmark's own texts
        texts += [e.prompt for task in benchmarks.bbh_tasks(Path(args.rank_bbh), cot=False, max_examples=5)
                  for e in task.examples]
    tokenizer = train_tokenizer(texts, tempfile.mkdtemp(prefix="bench-eval-tok-"), vocab_size=2000)
    model = build_model(ModelConfig(arch=args.arch), tokenizer, seed=0, training=False).eval()
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731
    # Sorted by length, as launcher/evaluation/evaluator.py batches them (the naive loop does not care).
    prompts = sorted(tokenizer.encode_batch([e.prompt for e in examples(args.generate_suite, args.examples, False, count)]),
                     key=len, reverse=True)
    if args.rank_bbh:
        ranked = bbh_examples(args.rank_bbh, args.examples, count, BBH_PROMPT_TOKENS)
    else:
        ranked = examples(args.rank_suite, args.examples, True, count, args.rank_shots)
    requests = [(tokenizer.encode(e.prompt), [tokenizer.encode(o) + [tokenizer.eos_id] for o in e.options])
                for e in ranked]
    requests.sort(key=lambda r: len(r[0]) + sum(map(len, r[1])), reverse=True)
    return tokenizer, model, prompts, requests


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("decoder", "t5"), default="decoder")
    parser.add_argument("--generate-suite", default="builtin_heldout", help="a mixture giving the generated examples")
    parser.add_argument("--rank-suite", default="builtin_classification",
                        help="a mixture giving the rank-classified examples")
    parser.add_argument("--rank-shots", type=int, default=0,
                        help="rank-classify few-shot prompts of --rank-suite with this many exemplars")
    parser.add_argument("--rank-bbh", metavar="DIR",
                        help="rank-classify BIG-Bench Hard's lettered multiple-choice tasks from DIR instead (3-shot)")
    parser.add_argument("--examples", type=int, default=32, help="generation prompts, and rank-classified examples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer, model, prompts, requests = set_up(args)
    pairs = [(p, [o]) for p, opts in requests for o in opts]
    scorer = Scorer(model, args.arch, tokenizer.pad_id, tokenizer.eos_id)
    b, n = args.batch_size, args.new_tokens
    # EOS held back: every row generates exactly n tokens on both paths.
    paths = {
        "generate_naive": lambda: [scorer.generate([p], n, min_new_tokens=n) for p in prompts],
        "generate_batched": lambda: [scorer.generate(prompts[i:i + b], n, min_new_tokens=n)
                                     for i in range(0, len(prompts), b)],
        "rank_naive": lambda: [scorer.loglikelihoods([pair]) for pair in pairs],
        "rank_batched": lambda: [scorer.loglikelihoods(requests[i:i + b]) for i in range(0, len(requests), b)],
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            times[name].append(timed(fn))
    med = {name: statistics.median(v) for name, v in times.items()}
    print(json.dumps({
        "arch": args.arch, "parameters": sum(p.numel() for p in model.parameters()), "threads": args.threads,
        "batch_size": b, "prompts": len(prompts), "new_tokens": args.new_tokens, "options": len(pairs),
        "generate_examples_per_s": {k: round(len(prompts) / med[f"generate_{k}"], 2) for k in ("naive", "batched")},
        "rank_options_per_s": {k: round(len(pairs) / med[f"rank_{k}"], 2) for k in ("naive", "batched")},
        "generate_speedup": round(med["generate_naive"] / med["generate_batched"], 2),
        "rank_speedup": round(med["rank_naive"] / med["rank_batched"], 2),
        "rank_positions": {"naive": sum(scorer.positions([pair]) for pair in pairs),
                           "batched": sum(scorer.positions(requests[i:i + b]) for i in range(0, len(requests), b))},
        "rank_prompt_tokens": sum(len(p) for p, _ in requests),
        "target_speedup": 5.0,
    }))


if __name__ == "__main__":
    main()
