"""``flanforge prepare MIXTURE --out DIR``: write a mixture's task records as webdataset shards."""

from __future__ import annotations

import argparse
import time

from flanforge.mixtures.registry import load_mixture
from flanforge.mixtures.shards import RECORDS_PER_SHARD, prepare
from flanforge.mixtures.task import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mixture", help="a registered mixture name or a task/mixture YAML file")
    parser.add_argument("--out", required=True, help="shards directory (created; complete tasks are skipped)")
    parser.add_argument("--workers", type=int, default=1, help="tasks written in parallel (processes)")
    parser.add_argument("--records-per-shard", type=int, default=RECORDS_PER_SHARD, help="records per tar shard")
    parser.add_argument("--force", action="store_true", help="rewrite every task, complete or not")


def run(args: argparse.Namespace) -> int:
    mixture = load_mixture(args.mixture)
    start = time.perf_counter()
    manifest = prepare(mixture, args.out, workers=args.workers, records_per_shard=args.records_per_shard, force=args.force)
    names = [t.name for t in mixture.tasks()]
    records = sum(manifest.num_records(n, split) for n in names for split in SPLITS)
    print(f"{len(names)} tasks, {records} records in {manifest.root} ({time.perf_counter() - start:.1f}s)")
    return 0
