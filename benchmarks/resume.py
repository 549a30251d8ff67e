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
the most blocks' picks), in wall-clock and process CPU seconds, ``--repeats``
times each of: cold, resumed deep, and resumed "shallow" (the same state at
depth 0: one row of each consumer's first block consumed). Every first batch
packs one whole block with cold caches (templates compiled, few-shot
exemplars generated): block 15 cold and shallow, block ``depth + 15`` deep.
So deep / cold also carries the difference between two blocks' contents,
and shallow / cold isolates what resuming itself costs on the same block.
``ratio`` is deep / cold of the wall-clock medians; ``ratios`` gives both
ratios of the minima and medians, wall and CPU (CPU time is what the code
costs; wall time also what other jobs take of the two cores).
Set-up as in benchmarks/packing.py. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from packing import Clock, child_arguments, child_command, child_inputs, common_arguments, make_stream, run_child, set_up, spread

from flanforge.mixtures.streaming.stream_state import StreamState, merge_state

WORLD, WORKERS, MICRO_BATCH = 8, 2, 4


def layout(args: argparse.Namespace) -> dict:
    return {"micro_batch_size": MICRO_BATCH, "num_workers": WORKERS, "world_size": WORLD}


def resumed_state(mixture, manifest, tok_file, args, depth_blocks: int) -> dict:
    """The merged state of a run in which every consumer read its blocks below the depth and one row of its next."""
    stream = make_stream(mixture, manifest, tok_file, args, **layout(args))
    consumers = WORLD * WORKERS
    depth = depth_blocks - depth_blocks % consumers
    lanes = [[depth + c, 1, 2] for c in range(consumers)]  # one row of a (>= 2 row) block consumed
    fresh = StreamState.from_dict(stream.state_dict([]))
    summaries = [  # micro_batches: a multiple of WORKERS, so worker w is consumer rank * WORKERS + w
        {"consumers": consumers, "micro_batches": depth, "lanes": lanes[r * WORKERS: (r + 1) * WORKERS]}
        for r in range(WORLD)
    ]
    return merge_state(fresh, summaries).to_dict()


def child(args: argparse.Namespace) -> None:
    """Time construction + first batch of consumer 15, cold (no --state) or resumed from --state."""
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
    state = resumed_state(mixture, manifest, tok_file, args, args.depth_blocks)
    facts["build_state_s"] = round(time.perf_counter() - start, 2)
    extra: dict[str, list[str]] = {"cold": []}
    for kind, resumed in (("shallow", resumed_state(mixture, manifest, tok_file, args, 0)), ("resume", state)):
        (workdir / f"{kind}_state.json").write_text(json.dumps(resumed))
        extra[kind] = ["--state", str(workdir / f"{kind}_state.json")]
    command = child_command(__file__, facts, manifest, tok_file, args)
    runs: dict[str, list[dict]] = {kind: [] for kind in extra}
    for _ in range(args.repeats):
        for kind in extra:
            runs[kind].append(run_child(command + extra[kind]))
    figures, ratio = {}, {}
    for clock in ("wall_s", "cpu_s"):
        times = {kind: spread([r[clock] for r in runs[kind]]) for kind in runs}
        figures.update({f"{kind}_first_batch_{clock}": t for kind, t in times.items()})
        ratio[clock] = {f"{kind}_{stat}": round(times[kind][stat] / times["cold"][stat], 3)
                        for kind in ("resume", "shallow") for stat in ("min", "median")}
    print(json.dumps({
        **facts,
        "consumers": WORLD * WORKERS,
        "depth_blocks": state["frontier"],
        "block_size": state["layout"]["block_size"],
        "depth_examples": state["frontier"] * state["layout"]["block_size"],
        "state_bytes": len(json.dumps(state)),
        "repeats": args.repeats,
        **{f"{kind}_first_block": runs[kind][0]["first_block"] for kind in runs},
        **figures,
        "ratio": ratio["wall_s"]["resume_median"],
        "ratios": ratio,
        "target_ratio": 1.1,
    }))


if __name__ == "__main__":
    main()
