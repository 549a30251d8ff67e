"""Time to first batch after resuming deep into a run, over time to first batch of a cold start.

    python benchmarks/resume.py                       # mixture builtin (demo if not registered)
    python benchmarks/resume.py --depth-blocks 2000 --repeats 1

The deep state is what a checkpoint ``--depth-blocks`` blocks into a run
holds: ``merge_state`` of tracker summaries in which each of the C = 8 ranks x
2 workers consumers has consumed all of its blocks below the depth and one row
of its next block (so every consumer resumes mid-block). Building it counts the
picks of every block below the depth, once, as checkpoints do along a run;
that is set-up, not measured.

Each measurement runs in a fresh interpreter: after loading the mixture,
manifest and tokenizer it times ``MixtureStream(...)`` construction plus the
first micro-batch of consumer 15 (rank 7, worker 1: the consumer that counts
the most blocks' picks), cold and resumed alternately; the ratio is of the
medians. Set-up as in benchmarks/packing.py. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from packing import common_arguments, make_stream, set_up

from flanforge.mixtures.registry import get_mixture
from flanforge.mixtures.shards import Manifest
from flanforge.mixtures.stream_state import StreamState, merge_state

WORLD, WORKERS, MICRO_BATCH = 8, 2, 4


def layout(args: argparse.Namespace) -> dict:
    return {"micro_batch_size": MICRO_BATCH, "num_workers": WORKERS, "world_size": WORLD}


def deep_state(mixture, manifest, tok_file, args) -> dict:
    stream = make_stream(mixture, manifest, tok_file, args, **layout(args))
    consumers = WORLD * WORKERS
    depth = args.depth_blocks - args.depth_blocks % consumers
    lanes = [[depth + c, 1, 2] for c in range(consumers)]  # one row of a (>= 2 row) block consumed
    fresh = StreamState.from_dict(stream.state_dict([]))
    summaries = [  # micro_batches: a multiple of WORKERS, so worker w is consumer rank * WORKERS + w
        {"consumers": consumers, "micro_batches": depth, "lanes": lanes[r * WORKERS: (r + 1) * WORKERS]}
        for r in range(WORLD)
    ]
    return merge_state(fresh, summaries).to_dict()


def child(args: argparse.Namespace) -> None:
    """Time construction + first batch of consumer 15, cold (no --state) or resumed."""
    mixture, manifest = get_mixture(args.mixture), Manifest.load(args.shards)
    state = json.loads(Path(args.state).read_text()) if args.state else None
    start = time.perf_counter()
    stream = make_stream(mixture, manifest, args.tokenizer, args, rank=WORLD - 1, state=state, **layout(args))
    batch = next(stream.worker_batches(WORKERS - 1))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "first_block": int(batch.block[0])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--depth-blocks", type=int, default=20000, help="how deep into the run the state is")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    mixture, manifest, tok_file, workdir, facts = set_up(args)
    start = time.perf_counter()
    state = deep_state(mixture, manifest, tok_file, args)
    facts["build_state_s"] = round(time.perf_counter() - start, 2)
    state_file = workdir / "deep_state.json"
    state_file.write_text(json.dumps(state))
    block_size = state["layout"]["block_size"]
    base = [sys.executable, __file__, "--child", "--mixture", facts["mixture"], "--shards", str(manifest.root),
            "--tokenizer", str(tok_file), "--seq-len", str(args.seq_len), "--block-size", str(block_size),
            "--seed", str(args.seed)]
    times: dict[str, list[float]] = {"cold": [], "resume": []}
    for _ in range(args.repeats):
        for kind, extra in (("cold", []), ("resume", ["--state", str(state_file)])):
            out = subprocess.run(base + extra, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            times[kind].append(result["seconds"])
            facts[f"{kind}_first_block"] = result["first_block"]
    cold, resume = statistics.median(times["cold"]), statistics.median(times["resume"])
    print(json.dumps({
        **facts,
        "consumers": WORLD * WORKERS,
        "depth_blocks": state["frontier"],
        "block_size": block_size,
        "depth_examples": state["frontier"] * block_size,
        "state_bytes": len(json.dumps(state)),
        "cold_first_batch_s": round(cold, 3),
        "resume_first_batch_s": round(resume, 3),
        "ratio": round(resume / cold, 3),
        "target_ratio": 1.2,
    }))


if __name__ == "__main__":
    main()
