"""Render + tokenize + pack throughput of one worker process, in tokens per second.

    python benchmarks/pipeline.py                  # mixture builtin (demo if not registered)
    python benchmarks/pipeline.py --blocks 3 --repeats 5
    python benchmarks/pipeline.py --mixture demo --materialise --verify-cost   # shard checksums' cost

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

``--verify-cost`` (with shards to read: a file-backed mixture, or ``--materialise``)
also measures the same stream with the shard member checksums not verified (the
reader's check replaced by a no-op), each repeat of both in turn in one run, and
reports both and their ratio. A reader verifies a shard once, when it first opens
it, so the cost falls on the first block.
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
    if args.unverified:
        from flanforge.mixtures.streaming import shards

        shards.bad_members = lambda data, shard: []  # the baseline: every member taken as sound
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
    parser.add_argument("--verify-cost", action="store_true", help="also measure without shard checksum verification")
    parser.add_argument("--unverified", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    _, manifest, tok_file, _, facts = set_up(args)
    command = child_command(__file__, facts, manifest, tok_file, args) + ["--blocks", str(args.blocks)]
    variants = {"verified": command, **({"unverified": command + ["--unverified"]} if args.verify_cost else {})}
    runs: dict[str, list] = {name: [] for name in variants}
    for _ in range(args.repeats):  # in turn: both see the same load
        for name, cmd in variants.items():
            runs[name].append(run_child(cmd))
    figures = {name: summary(r, args.blocks) for name, r in runs.items()}
    if len({(f["tokens"], f["examples"]) for f in figures.values()}) > 1:
        raise SystemExit("verified and unverified streams produced different batches")
    out = {**facts, "seq_len": args.seq_len, "block_size": runs["verified"][0]["block_size"],
           "repeats": args.repeats, **figures.pop("verified"), "target_tokens_per_s": 50000}
    if args.verify_cost:
        out["unverified"] = figures["unverified"]
        out["verified_over_unverified"] = {
            "tokens_per_s": round(out["tokens_per_s"]["best"] / out["unverified"]["tokens_per_s"]["best"], 4),
            "first_block_s": round(out["first_block_s"]["min"] / out["unverified"]["first_block_s"]["min"], 4)}
    print(json.dumps(out))


def summary(runs: list[dict], blocks: int) -> dict:
    """The figures of one variant's repeats."""
    if len({(r["tokens"], r["examples"]) for r in runs}) > 1:
        raise SystemExit("the repeats produced different batches: the stream is not deterministic")
    tokens, examples = runs[0]["tokens"], runs[0]["examples"]
    wall, cpu = [r["blocks"]["wall_s"] for r in runs], [r["blocks"]["cpu_s"] for r in runs]
    return {
        "first_block_s": spread([r["first"]["wall_s"] for r in runs]),
        "first_block_cpu_s": spread([r["first"]["cpu_s"] for r in runs]),
        "blocks_timed": blocks,
        "tokens": tokens,
        "examples": examples,
        "seconds": spread(wall),
        "tokens_per_s": per_second(tokens, wall),
        "tokens_per_cpu_s": per_second(tokens, cpu),
        "examples_per_s": per_second(examples, wall),
    }


if __name__ == "__main__":
    main()
