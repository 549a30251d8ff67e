"""Evaluation throughput: batched generation and rank classification against the naive loops.

    python benchmarks/eval.py                       # demo-sized decoder
    python benchmarks/eval.py --arch t5 --examples 32

Both paths run ``flanforge.model.scoring.Scorer`` on the same model (the demo's
tiny Llama-style decoder, ~3.5M parameters, or a tiny T5; random init, fp32,
CPU) and the same prompts: validation examples taken in turn from the tasks
of ``--generate-suite`` (``builtin_heldout``'s generated tasks) and
``--rank-suite`` (``builtin_classification``: 2-4 answer options), rendered
by ``flanforge.mixtures.evalsets`` and tokenised with a SentencePiece
tokenizer trained here on those tasks: naive is one ``generate`` per example and one forward per
answer option (a batch of one), batched is ``--batch-size`` examples per
``generate`` and ``--batch-size`` examples (all their options, after one
copy of the prompt) per forward. Generation runs a
fixed ``--new-tokens`` with EOS held back, so both paths make the same number
of tokens. Each path is timed ``--rounds`` times, alternating, on the same
threads; the speed-ups are of the medians. The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time

import torch

from flanforge.model.config import ModelConfig
from flanforge.mixtures import registry
from flanforge.mixtures.evalsets import build_suite
from flanforge.model.load import build_model
from flanforge.model.scoring import Scorer
from flanforge.model.tokenizer import train_tokenizer


def examples(name: str, n: int, rank: bool, count_tokens) -> list:
    """``n`` validation examples of ``name``'s tasks scored by rank classification (or by generation),
    taken from the tasks in turn (a fixed shuffle of them)."""
    tasks = [t for t in build_suite(name, max_examples=8, count_tokens=count_tokens).tasks
             if (t.metric == "accuracy") == rank]
    random.Random(0).shuffle(tasks)
    picked = [t.examples[i] for i in range(8) for t in tasks if i < len(t.examples)]
    return picked[:n]


def set_up(args):
    rng = random.Random(0)
    tasks = [t for name in (args.generate_suite, args.rank_suite) for t in registry.get_mixture(name).tasks()]
    texts = [t for task in tasks for i in range(5)
             for t in (lambda ex: (ex.inputs, ex.targets))(task.render(task.records("train")[i], rng, i))]
    tokenizer = train_tokenizer(texts, tempfile.mkdtemp(prefix="bench-eval-tok-"), vocab_size=2000)
    model = build_model(ModelConfig(arch=args.arch), tokenizer, seed=0, training=False).eval()
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731
    # Sorted by length, as launcher/evaluator.py batches them (the naive loop does not care).
    prompts = sorted(tokenizer.encode_batch([e.prompt for e in examples(args.generate_suite, args.examples, False, count)]),
                     key=len, reverse=True)
    requests = [(tokenizer.encode(e.prompt), [tokenizer.encode(o) + [tokenizer.eos_id] for o in e.options])
                for e in examples(args.rank_suite, args.examples, True, count)]
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
        "target_speedup": 5.0,
    }))


if __name__ == "__main__":
    main()
