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
the most blocks' picks), in wall-clock and process CPU seconds, cold and
resumed alternately, ``--repeats`` times each. Both first batches pack one
whole block with cold caches (templates compiled, few-shot exemplars
generated), block 15 cold and block ``depth + 15`` resumed, so the ratio
also carries the difference between those two blocks' contents. ``ratio`` is
of the wall-clock medians; ``ratios`` gives the minima and the CPU seconds too
(CPU time is what the code costs; wall time also what other jobs take).
Set-up as in benchmarks/packing.py. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from packing import Clock, child_arguments, child_command, child_inputs, common_arguments, make_stream, run_child, set_up, spread

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
    mixture, manifest = child_inputs(args)
    state = json.loads(Path(args.state).read_text()) if args.state else None
    clock = Clock()
    stream = make_stream(mixture, manifest, args.tokenizer, args, rank=WORLD - 1, state=state, **layout(args))
    batch = next(stream.worker_batches(WORKERS - 1))
    print(json.dumps({**clock.read(), "first_block": int(batch.block[0])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    child_arguments(parser)
    parser.add_argument("--depth-blocks", type=int, default=20000, help="how deep into the run the state is")
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
    command = child_command(__file__, facts, manifest, tok_file, args)
    runs: dict[str, list[dict]] = {"cold": [], "resume": []}
    for _ in range(args.repeats):
        for kind, extra in (("cold", []), ("resume", ["--state", str(state_file)])):
            runs[kind].append(run_child(command + extra))
    figures, ratio = {}, {}
    for clock in ("wall_s", "cpu_s"):
        cold, resume = (spread([r[clock] for r in runs[kind]]) for kind in ("cold", "resume"))
        figures[f"cold_first_batch_{clock}"], figures[f"resume_first_batch_{clock}"] = cold, resume
        ratio[clock] = {stat: round(resume[stat] / cold[stat], 3) for stat in ("min", "median")}
    print(json.dumps({
        **facts,
        "consumers": WORLD * WORKERS,
        "depth_blocks": state["frontier"],
        "block_size": state["layout"]["block_size"],
        "depth_examples": state["frontier"] * state["layout"]["block_size"],
        "state_bytes": len(json.dumps(state)),
        "repeats": args.repeats,
        "cold_first_block": runs["cold"][0]["first_block"],
        "resume_first_block": runs["resume"][0]["first_block"],
        **figures,
        "ratio": ratio["wall_s"]["median"],
        "ratios": ratio,
        "target_ratio": 1.1,
    }))


if __name__ == "__main__":
    main()
