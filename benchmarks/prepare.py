"""`flanforge prepare` at scale: a synthetic Flan collection in the published parquet layout.

    python benchmarks/prepare.py                      # 1,000,000 records
    python benchmarks/prepare.py --records 4000000 --workdir /scratch/bench

Writes ``--records`` synthetic pre-rendered rows as
``<submix>_<variant>_data/part.N.parquet`` (every FLAN 2022 variant directory,
~600 tasks, columns as the published copies: inputs, targets, _template_idx,
_task_source, _task_name, _template_type; inputs 200-1,200 characters, targets
5-200), then runs each step in a fresh process and reports wall time,
records/s, records per CPU-second (the machine is shared, so wall-clock rates
depend on what else runs; CPU time is what one worker costs) and peak RSS:

  count     the first look at the directory (``FlanCollection(...).mixture()``:
            reads every row once; cached afterwards)
  prepare   ``prepare(flan2022)`` with 1 worker (records/s per worker), and
            with 2 workers over the same rows, and with 1 worker over half the
            rows (peak RSS does not follow the input size)
  rerun     ``prepare`` again on the finished directory (nothing to do)
  read      random access to 20,000 prepared records through ``ShardReader``
  verify    ``flanforge prepare --verify``'s check of the whole directory (every member's
            checksum; the page cache warm from the steps before): seconds per GB
  builtin   ``flanforge prepare builtin --workers 2``

It also reports the bytes on disk per record beyond the record's text: the
tar framing (headers, padding) and the JSON framing (keys, quotes, escapes).
The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SOURCES = {"flan": "Flan2021", "t0": "T0", "niv2": "NIv2", "cot": "CoT", "dialog": "Dialog"}
VARIANTS = {"flan": 4, "t0": 4, "niv2": 2, "cot": 2, "dialog": 2}
TASKS = {"flan": 60, "t0": 80, "niv2": 150, "cot": 9, "dialog": 4}
ROWS_PER_PART = 50_000
WORDS = np.array("the of and to in is was for on that with as by at from his her an which or be are this have "
                 "question answer premise hypothesis sentence passage context options choose true false".split())


def synthesize(root: Path, records: int, seed: int = 0) -> int:
    """Write ``records`` rows spread over every variant directory; returns the text bytes (inputs + targets)."""
    rng = np.random.default_rng(seed)
    dirs = [(s, v) for s in VARIANTS for v in ("zsopt", "fsopt", "zsnoopt", "fsnoopt")[: VARIANTS[s]]]
    per_dir = -(-records // len(dirs))
    text_bytes = written = 0
    for submix, variant in dirs:
        folder = root / f"{submix}_{variant}_data"
        folder.mkdir(parents=True, exist_ok=True)
        left = min(per_dir, records - written)
        for part, start in enumerate(range(0, left, ROWS_PER_PART)):
            n = min(ROWS_PER_PART, left - start)
            inputs = _texts(rng, n, 200, 1200)
            targets = _texts(rng, n, 5, 200)
            task_ids = rng.integers(0, TASKS[submix], n)
            table = pa.table({
                "inputs": inputs,
                "targets": targets,
                "_template_idx": rng.integers(0, 10, n),
                "_task_source": [SOURCES[submix]] * n,
                "_task_name": [f"{submix}_task{t:03d}" for t in task_ids],
                "_template_type": [f"{variant[:2]}_{variant[2:]}"] * n,
            })
            pq.write_table(table, folder / f"part.{part}.parquet")
            text_bytes += sum(len(s) for s in inputs) + sum(len(s) for s in targets)  # ASCII: chars = bytes
        written += left
    return text_bytes


def _texts(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[str]:
    """``n`` texts of ``lo``..``hi`` characters: slices of one long random text at random offsets."""
    text = " ".join(WORDS[rng.integers(0, len(WORDS), 200_000)].tolist())
    offsets = rng.integers(0, len(text) - hi, n).tolist()
    return [text[o: o + k] for o, k in zip(offsets, rng.integers(lo, hi, n).tolist())]


STEP = r"""
import json, os, resource, sys, time
from flanforge.mixtures.sources.flan_collection import FlanCollection
from flanforge.mixtures.streaming.shards import Manifest, ShardReader, prepare
step, data, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
mixture = FlanCollection(data).mixture()
records = sum(t.num_examples() for t in mixture.tasks())
count_s = time.perf_counter() - start
result = {"records": records, "tasks": len(mixture.tasks()), "count_s": count_s}
def cpu():
    mine, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + kids.ru_utime + kids.ru_stime
if step == "prepare":
    start, cpu_start = time.perf_counter(), cpu()
    prepare(mixture, out, workers=workers, progress=False)
    result["prepare_s"], result["prepare_cpu_s"] = time.perf_counter() - start, cpu() - cpu_start
elif step == "read":
    import random
    manifest, rng = Manifest.load(out), random.Random(0)
    reader, names = ShardReader(manifest), sorted(manifest.tasks)
    picks = [(t, rng.randrange(manifest.num_records(t))) for t in rng.choices(names, k=20000)]
    start = time.perf_counter()
    for t, i in picks:
        reader.record(t, i)
    result["read_s"] = time.perf_counter() - start
elif step == "verify":
    from flanforge.mixtures.streaming.shards import verify_directory
    start = time.perf_counter()
    problems, result["verify_bytes"] = verify_directory(out)
    result["verify_s"] = time.perf_counter() - start
    assert not problems, problems
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across exec)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
result["peak_rss_mb"] = int(hwm.split()[1]) / 1024
result["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(result))
"""


def run_step(step: str, data: Path, out: Path, workers: int, cache: Path) -> dict:
    env = {**os.environ, "FLANFORGE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STEP, step, str(data), str(out), str(workers)],
                          env=env, capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    print(step, workers, json.dumps(result), flush=True)
    return result


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.tar"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=None, help="kept when given; default: a temp dir, removed")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="flanforge-prepare-bench-"))
    figures: dict = {"records": args.records, "load_before": os.getloadavg()[0]}
    try:
        start = time.perf_counter()
        text = synthesize(work / "full", args.records)
        synthesize(work / "half", args.records // 2)
        figures["synthesize_s"] = time.perf_counter() - start
        figures["parquet_mb"] = sum(p.stat().st_size for p in (work / "full").rglob("*.parquet")) / 2**20
        count = run_step("count", work / "full", work / "out1", 1, work / "cache-cold")
        figures["count_records_per_s"] = count["records"] / count["count_s"]
        one = run_step("prepare", work / "full", work / "out1", 1, work / "cache")
        two = run_step("prepare", work / "full", work / "out2", 2, work / "cache")
        half = run_step("prepare", work / "half", work / "out-half", 1, work / "cache")
        rerun = run_step("prepare", work / "full", work / "out1", 1, work / "cache")
        read = run_step("read", work / "full", work / "out1", 1, work / "cache")
        verify = run_step("verify", work / "full", work / "out1", 1, work / "cache")
        figures.update({
            "tasks": one["tasks"],
            "prepare_1_worker_records_per_s": one["records"] / one["prepare_s"],
            "prepare_1_worker_records_per_cpu_s": one["records"] / one["prepare_cpu_s"],
            "prepare_2_workers_records_per_s": two["records"] / two["prepare_s"],
            "prepare_2_workers_records_per_cpu_s": two["records"] / two["prepare_cpu_s"],
            "peak_rss_mb_1_worker_full": one["peak_rss_mb"],
            "peak_rss_mb_1_worker_half": half["peak_rss_mb"],
            "peak_rss_mb_2_workers_parent": two["peak_rss_mb"],
            "peak_rss_mb_2_workers_child": two["children_peak_rss_mb"],
            "rerun_s": rerun["prepare_s"],
            "reads_per_s": 20000 / read["read_s"],
            "verify_gb": verify["verify_bytes"] / 1e9,
            "verify_s_per_gb": verify["verify_s"] / (verify["verify_bytes"] / 1e9),
        })
        shards = disk_bytes(work / "out1")
        figures["shard_mb"] = shards / 2**20
        figures["overhead_bytes_per_record"] = (shards - text) / args.records
        tar_framing = sum(p.stat().st_size for p in (work / "out1").rglob("*.tar")) - _member_bytes(work / "out1")
        figures["tar_framing_bytes_per_record"] = tar_framing / args.records
        start = time.perf_counter()
        subprocess.run([Path(sys.executable).with_name("flanforge"), "prepare", "builtin", "--out", str(work / "builtin"),
                        "--workers", "2"], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        figures["prepare_builtin_s"] = time.perf_counter() - start
        figures["load_after"] = os.getloadavg()[0]
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


def _member_bytes(folder: Path) -> int:
    """Bytes of the members' data (the JSON lines) in every shard under ``folder``."""
    import tarfile

    total = 0
    for path in folder.rglob("*.tar"):
        with tarfile.open(path) as tar:
            total += sum(m.size for m in tar.getmembers())
    return total


if __name__ == "__main__":
    main()
