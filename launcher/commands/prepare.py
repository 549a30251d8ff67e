"""``flanforge prepare MIXTURE --out DIR``: write a mixture's task records as webdataset shards.

``--out`` may be a URL (``s3://bucket/prefix``; the endpoint from ``--endpoint-url`` or
``AWS_ENDPOINT_URL``): the set is written in a staging directory under ``--cache-dir``, then
uploaded, its manifest last (``mixtures/storage/``).

``--slice i/n`` does every n-th job (a task or a Flan-collection part) from
the i-th, so n processes or nodes (``slurm/prepare.sbatch``, a job array)
share the work; each run publishes what is complete, and the last one to
finish publishes all of it. Re-running skips finished jobs. ``--out`` must be new,
empty or a shards directory (checked before any work). Interrupted (Ctrl-C,
SIGTERM), out of disk space or over a file-size limit, prepare leaves the
finished jobs published and nothing of the unfinished ones; run it again to
continue.

``flanforge prepare --verify DIR`` reads every shard of a prepared directory and
lists each member whose bytes do not match its checksum (and each shard missing or
of another size), one a line; the exit status is 2 when there is any.
"""

from __future__ import annotations

import argparse
import time

from flanforge.arguments import at_least, writable_dir
from flanforge.mixtures.registry import check_data_dir, load_mixture
from flanforge.mixtures.storage import StorageConfig, is_remote
from flanforge.mixtures.streaming.shards import RECORDS_PER_SHARD, ShardError, check_out, prepare, verify_directory
from flanforge.mixtures.sources.base import POLICIES
from flanforge.mixtures.task import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mixture", nargs="?", help="a registered mixture name or a task/mixture YAML file")
    parser.add_argument("--out", help="shards directory or URL (s3://...; complete jobs are skipped)")
    parser.add_argument("--verify", metavar="DIR", help="instead: check every shard member of the prepared DIR "
                        "against its checksum and list every bad one")
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
    if not 0 <= index < count:
        raise ShardError(f"slice {index}/{count}: expected i/n with 0 <= i < n")
    return index, count


def verify(root: str) -> int:
    start = time.perf_counter()
    problems, read = verify_directory(root)
    for line in problems:
        print(line)
    seconds = time.perf_counter() - start
    if problems:
        raise ShardError(f"--verify {root}: {len(problems)} problem(s), listed above; prepare again with --force "
                         "(or train with mixture.on_bad_record: skip to skip the bad members' records)")
    print(f"{root}: every shard member matches its checksum ({read / 1e9:.3f} GB in {seconds:.1f}s)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        if args.mixture is not None or args.out is not None:
            raise ShardError("--verify DIR checks a prepared directory: give it alone (no MIXTURE, no --out)")
        return verify(args.verify)
    if args.mixture is None or args.out is None:
        raise ShardError("give a MIXTURE and --out DIR (or --verify DIR)")
    part = _slice(args.slice)
    at_least(args.workers, 1, "--workers")
    at_least(args.records_per_shard, 1, "--records-per-shard")
    check_data_dir(args.mixture, args.data_dir)
    check_out(args.out)
    if not is_remote(args.out):
        writable_dir(args.out, "--out")  # created later: a place where nothing can be created is refused now
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
