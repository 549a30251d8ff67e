"""Render + tokenize + pack throughput of one worker process, in tokens per second.

    python benchmarks/pipeline.py                  # mixture builtin (demo if not registered)
    python benchmarks/pipeline.py --blocks 3

One consumer (what one DataLoader worker runs) in this process, one torch
thread: it reads records from the shards, renders, tokenizes, packs whole
blocks and lays out batches. The first block is timed apart (it opens and
checksums shards, compiles templates); the throughput is over the next
``--blocks`` blocks: non-pad tokens produced per wall-clock second.
Set-up as in benchmarks/packing.py. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

from packing import common_arguments, make_stream, set_up, whole_blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--blocks", type=int, default=4, help="blocks timed after the first")
    args = parser.parse_args()
    mixture, manifest, tok_file, _, facts = set_up(args)
    stream = make_stream(mixture, manifest, tok_file, args)
    batches = stream.worker_batches(0)
    start = time.perf_counter()
    for _ in whole_blocks(batches, 1):
        pass
    first = time.perf_counter() - start
    tokens = examples = 0
    start = time.perf_counter()
    for batch in whole_blocks(batches, args.blocks):
        tokens += int((batch.tensors["segment_ids"] > 0).sum())
        examples += len(batch.meta[0])
    seconds = time.perf_counter() - start
    print(json.dumps({
        **facts,
        "seq_len": args.seq_len,
        "block_size": stream.cfg.block_size,
        "first_block_s": round(first, 3),
        "blocks_timed": args.blocks,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds),
        "examples_per_s": round(examples / seconds),
        "target_tokens_per_s": 50000,
    }))


if __name__ == "__main__":
    main()
