"""Render + tokenize + pack throughput of one worker process, in tokens per second.

    python benchmarks/pipeline.py                  # mixture builtin (demo if not registered)
    python benchmarks/pipeline.py --blocks 3 --repeats 5

One consumer (what one DataLoader worker runs), one torch thread: it reads
records from the shards (or generates them: the built-in tasks), renders,
tokenizes, packs whole blocks and lays out batches. The first block is timed
apart (it opens and checksums shards, compiles templates, generates the
few-shot exemplar pools); the throughput is over the next ``--blocks`` blocks:
non-pad tokens produced per second. Each of ``--repeats`` measurements runs in
a fresh interpreter on the same stream; the figures are the best (from the
least time) and the median over them, per wall-clock second and per CPU second
of the process. Set-up as in benchmarks/packing.py. The last line of output is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics

from packing import (
    Clock, child_arguments, child_command, child_inputs, common_arguments, make_stream, run_child, set_up, spread,
    whole_blocks,
)


def child(args: argparse.Namespace) -> None:
    """One measurement: the first block, then ``--blocks`` blocks, timed apart."""
    mixture, manifest = child_inputs(args)
    stream = make_stream(mixture, manifest, args.tokenizer, args)
    batches = stream.worker_batches(0)
    clock = Clock()
    for _ in whole_blocks(batches, 1):
        pass
    first = clock.read()
    tokens = examples = 0
    clock = Clock()
    for batch in whole_blocks(batches, args.blocks):
        tokens += int((batch.tensors["segment_ids"] > 0).sum())
        examples += len(batch.meta[0])
    print(json.dumps({"block_size": stream.cfg.block_size, "first": first, "blocks": clock.read(),
                      "tokens": tokens, "examples": examples}))


def per_second(count: int, seconds: list[float]) -> dict[str, int]:
    return {"best": round(count / min(seconds)), "median": round(count / statistics.median(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    child_arguments(parser)
    parser.add_argument("--blocks", type=int, default=4, help="blocks timed after the first")
    args = parser.parse_args()
    if args.child:
        return child(args)
    _, manifest, tok_file, _, facts = set_up(args)
    command = child_command(__file__, facts, manifest, tok_file, args) + ["--blocks", str(args.blocks)]
    runs = [run_child(command) for _ in range(args.repeats)]
    if len({(r["tokens"], r["examples"]) for r in runs}) > 1:
        raise SystemExit("the repeats produced different batches: the stream is not deterministic")
    tokens, examples = runs[0]["tokens"], runs[0]["examples"]
    wall, cpu = [r["blocks"]["wall_s"] for r in runs], [r["blocks"]["cpu_s"] for r in runs]
    print(json.dumps({
        **facts,
        "seq_len": args.seq_len,
        "block_size": runs[0]["block_size"],
        "repeats": args.repeats,
        "first_block_s": spread([r["first"]["wall_s"] for r in runs]),
        "first_block_cpu_s": spread([r["first"]["cpu_s"] for r in runs]),
        "blocks_timed": args.blocks,
        "tokens": tokens,
        "seconds": spread(wall),
        "tokens_per_s": per_second(tokens, wall),
        "tokens_per_cpu_s": per_second(tokens, cpu),
        "examples_per_s": per_second(examples, wall),
        "target_tokens_per_s": 50000,
    }))


if __name__ == "__main__":
    main()
