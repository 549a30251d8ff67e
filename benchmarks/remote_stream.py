"""Input-pipeline tokens/s from local shards against the same shards on S3 behind added latency.

    python benchmarks/remote_stream.py                     # about 2 minutes on 2 cores
    python benchmarks/remote_stream.py --blocks 4 --records 2000

A synthetic file-backed mixture (``--tasks`` tasks of ``--records`` Flan-like records, 200 records a
shard) is prepared locally and with ``prepare --out s3://`` into moto's S3 server. moto and one
:class:`FaultProxy` per setting (latency per request, a bandwidth cap per response) run in a second
process, so the server's work does not share the consumer's interpreter. One consumer (what one rank
with ``num_workers=0`` runs) reads, renders, tokenises and packs ``--blocks`` whole blocks after a
first one (timed apart: it opens the first shards, compiles templates) from each setting:

  local         the shards directory, as flanforge reads it without storage
  s3 +Nms       the S3 URL through the proxy, the default read-ahead (2 blocks) and 4 download threads
  read_ahead=0  the same without read-ahead (only the block being packed is fetched, in parallel)

and reports tokens/s against the local run measured in the same process, the bytes downloaded over the
bytes of the shards the consumer read (1.0: nothing fetched twice), and the cache's peak against
``cache_limit`` (one run with a limit of a third of the data). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import s3_server  # noqa: E402
from flanforge.mixtures.config import StreamConfig  # noqa: E402
from flanforge.mixtures.mixture import Mixture, Rate  # noqa: E402
from flanforge.mixtures.storage import StorageConfig  # noqa: E402
from flanforge.mixtures.streaming.shards import Manifest, prepare  # noqa: E402
from flanforge.mixtures.streaming.stream import MixtureStream  # noqa: E402
from flanforge.mixtures.task import Task, Template  # noqa: E402
from flanforge.model.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402

WORDS = ("the of and to in is was for that on as with by at from his her which or an be this are had not "
         "river stone cloud tiger maple orange silver garden window candle forest pencil rocket question "
         "answer premise hypothesis because therefore sentence paragraph summary article review").split()


def make_task(name: str, records: int) -> Task:
    def source(split: str) -> list[dict]:
        rng = random.Random(f"{name}/{split}")
        n = {"train": records, "exemplars": 8, "validation": 8}[split]
        return [{"text": " ".join(rng.choices(WORDS, k=rng.randint(30, 120))),
                 "answer": " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))} for _ in range(n)]

    return Task(name, ("text", "answer"), (Template(f"{name}0", "Read: {{ text }}\nAnswer:"),), source)


def serve(conn, settings: list[dict]) -> None:
    """The second process: moto and one proxy per setting; sends the endpoints, serves until told to stop."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server, endpoint = s3_server.start_moto()
    proxies = [s3_server.FaultProxy(endpoint, s3_server.Faults(**faults)) for faults in settings]
    conn.send((endpoint, [p.endpoint for p in proxies]))
    conn.recv()
    for p in proxies:
        p.stop()
    server.stop()


def measure(mixture: Mixture, manifest: Manifest, tokenizer_file: Path, args: argparse.Namespace) -> dict:
    cfg = StreamConfig(seed=0, seq_len=args.seq_len, micro_batch_size=1, block_size=args.block_size)
    stream = MixtureStream(mixture, load_tokenizer(tokenizer_file), cfg, manifest)
    batches = stream.worker_batches(0)
    start, tokens, blocks, first = time.perf_counter(), 0, 0, None
    for batch in batches:
        if first is not None:
            tokens += int((batch.tensors["segment_ids"] > 0).sum())
        if batch.row[0] == batch.block_rows[0] - 1:  # a block's last row
            if first is None:
                first, start = time.perf_counter() - start, time.perf_counter()
            else:
                blocks += 1
                if blocks == args.blocks:
                    break
    seconds = time.perf_counter() - start
    out = {"tokens_per_s": round(tokens / seconds), "first_block_s": round(first, 2)}
    store = manifest.store
    if store.remote:
        read = sum(manifest.files[p.relative_to(store.cache.path(store.prefix)).as_posix()][0]
                   for p in stream.reader._index)  # noqa: SLF001 - the shards this consumer opened
        out.update(downloaded_over_read=round(store.cache.downloaded / read, 3), peak_cache=store.cache.peak,
                   retries=store.retries())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--records", type=int, default=3500, help="train records per task")
    parser.add_argument("--blocks", type=int, default=40, help="whole blocks timed after the first (about one epoch)")
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--bandwidth", type=float, default=50e6, help="bytes/s per response through the proxy")
    parser.add_argument("--latencies", default="0.02,0.1", help="seconds per request, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s3_server.use_test_credentials()
    work = Path(tempfile.mkdtemp(prefix="flanforge-remote-"))
    mixture = Mixture("synthetic", [(make_task(f"task{k}", args.records), Rate.examples()) for k in range(args.tasks)])
    local = prepare(mixture, work / "local", records_per_shard=200, progress=False)
    data = sum(size for size, _ in local.files.values())
    texts = [r["text"] for t in mixture.tasks() for r in t.records("train")[:300]]
    train_tokenizer(texts, work / "tok", vocab_size=2000)
    tokenizer_file = work / "tok"

    latencies = [float(x) for x in args.latencies.split(",")]
    settings = [{"latency": lat, "bandwidth": args.bandwidth} for lat in latencies]
    parent, child = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child, settings), daemon=True)
    server.start()
    endpoint, proxies = parent.recv()
    s3_server.make_bucket(endpoint, "bench")
    url = "s3://bench/synthetic"
    prepare(mixture, url, records_per_shard=200, progress=False,
            storage=StorageConfig(endpoint_url=endpoint, cache_dir=str(work / "staging")))

    def remote(proxy: str, tag: str, **kw) -> Manifest:
        return Manifest.load(url, StorageConfig(endpoint_url=proxy, cache_dir=str(work / f"cache-{tag}"), **kw))

    results: dict[str, dict] = {"local": measure(mixture, local, tokenizer_file, args)}
    print("local", results["local"], flush=True)
    for lat, proxy in zip(latencies, proxies):
        ms = f"{round(lat * 1000)}ms"
        for name, kw in ((f"s3 +{ms}", {}), (f"s3 +{ms} read_ahead=0", {"read_ahead": 0})):
            results[name] = measure(mixture, remote(proxy, name.replace(" ", "_"), **kw), tokenizer_file, args)
            print(name, results[name], flush=True)
    name = f"s3 +{round(latencies[0] * 1000)}ms cache_limit=data/3"
    results[name] = measure(mixture, remote(proxies[0], "small", cache_limit=data // 3), tokenizer_file, args)
    results[name]["cache_limit"] = data // 3
    print(name, results[name], flush=True)
    results["local (again)"] = measure(mixture, local, tokenizer_file, args)
    parent.send("stop")
    server.join()

    base = (results["local"]["tokens_per_s"] + results["local (again)"]["tokens_per_s"]) / 2
    for r in results.values():
        r["vs_local"] = round(r["tokens_per_s"] / base, 3)
    facts = {"data_bytes": data, "shards": len(local.files), "blocks": args.blocks, "block_size": args.block_size,
             "seq_len": args.seq_len, "bandwidth": args.bandwidth, "results": results}
    print(f"{'setting':<34} {'tokens/s':>9} {'vs local':>8} {'1st block s':>11} {'dl/read':>7} {'peak cache':>10}")
    for name, r in results.items():
        print(f"{name:<34} {r['tokens_per_s']:>9} {r['vs_local']:>8} {r['first_block_s']:>11} "
              f"{r.get('downloaded_over_read', ''):>7} {r.get('peak_cache', ''):>10}")
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
