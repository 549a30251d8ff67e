"""``flanforge prepare MIXTURE --out DIR``: write a mixture's task records as webdataset shards.

``--out`` may be a URL (``s3://bucket/prefix``; the endpoint from ``--endpoint-url`` or
``AWS_ENDPOINT_URL``): the set is written in a staging directory under ``--cache-dir``, then
uploaded, its manifest last (``mixtures/storage/``).

``--slice i/n`` does every n-th job (a task or a Flan-collection part) from
the i-th, so n processes or nodes (``slurm/prepare.sbatch``, a job array)
share the work; each run publishes what is complete, and the last one to
finish publishes all of it. Re-running skips finished jobs.
"""

from __future__ import annotations

import argparse
import time

from flanforge.mixtures.registry import load_mixture
from flanforge.mixtures.storage import StorageConfig
from flanforge.mixtures.streaming.shards import RECORDS_PER_SHARD, ShardError, prepare
from flanforge.mixtures.sources.base import POLICIES
from flanforge.mixtures.task import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mixture", help="a registered mixture name or a task/mixture YAML file")
    parser.add_argument("--out", required=True, help="shards directory or URL (s3://...; complete jobs are skipped)")
    parser.add_argument("--endpoint-url", help="an S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--cache-dir", help="where a URL's set is staged before the upload (storage.cache_dir)")
    parser.add_argument("--workers", type=int, default=1, help="jobs run in parallel (processes)")
    parser.add_argument("--records-per-shard", type=int, default=RECORDS_PER_SHARD, help="records per tar shard of a task")
    parser.add_argument("--force", action="store_true", help="rewrite every job of this slice, complete or not")
    parser.add_argument("--slice", default="0/1", metavar="I/N", help="do only jobs i, i+n, i+2n, ... (0 <= i < n)")
    parser.add_argument("--data-dir", help="the Flan collection directory of `flan2022`")
    parser.add_argument("--on-bad-record", choices=POLICIES, default="error", help="malformed source records")


def _slice(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ShardError(f"--slice {text!r}: expected I/N, e.g. 0/4") from None
    return index, count


def run(args: argparse.Namespace) -> int:
    part = _slice(args.slice)
    mixture = load_mixture(args.mixture, args.on_bad_record, args.data_dir)
    start = time.perf_counter()
    storage = StorageConfig(endpoint_url=args.endpoint_url, cache_dir=args.cache_dir)
    manifest = prepare(mixture, args.out, workers=args.workers, records_per_shard=args.records_per_shard,
                       force=args.force, part=part, storage=storage)
    names = [t.name for t in mixture.tasks()]
    ready = [n for n in names if n in manifest.tasks]
    records = sum(manifest.num_records(n, split) for n in ready for split in SPLITS)
    print(f"{len(ready)} tasks, {records} records in {manifest.root} ({time.perf_counter() - start:.1f}s)")
    if len(ready) < len(names):
        print(f"{len(names) - len(ready)} tasks wait for jobs of other slices; run the others (or this without --slice)")
    return 0
