"""``flanforge export``'s peak host memory on a model whose fp32 weights are >= 4 GB.

    OMP_NUM_THREADS=1 python benchmarks/export_large.py                  # configs/bench_1b.yaml, ~1.0B parameters
    OMP_NUM_THREADS=1 python benchmarks/export_large.py --layers 4       # a quick check of the script itself

Training a 1B-parameter model with AdamW takes ~18 bytes a parameter of host memory on CPU ranks (more
than a 24 GiB machine has: BENCHMARKS.md), so the checkpoint is the one a ZeRO-3 run saves before its
first step: ``flanforge train``'s own set-up (``launcher/training/loop.py: setup``, 2 CPU ranks started
by DeepSpeed's launcher, the model built partitioned) and its own checkpointer, which writes the fp32
weights as every later checkpoint does (the Adam moments do not exist yet; export does not read them).
Then ``flanforge export RUN --max-shard-size 1GB`` runs while its memory is sampled every 20 ms from
``/proc/PID/status``: its peak RSS, and the peak of its anonymous part (``RssAnon``). DeepSpeed's lazy
reader maps the optimizer shards (``torch.load(mmap=True)``), so the RSS also counts the page cache of
the file pages read so far (``RssFile``: clean pages the kernel takes back under pressure); the
anonymous part is the memory the export itself needs. Both against the model's fp32 size. The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["deepspeed.zero_stage=3", "train.precision=bf16", "mixture.seq_len=256", "train.micro_batch_size=1",
         "launch.nproc_per_node=2", "mixture.num_workers=0", "eval.every_steps=0",
         # DeepSpeed's default buckets (5e8 elements) would take more host memory than the model's partitions
         "deepspeed.extra={zero_optimization: {reduce_bucket_size: 20000000, stage3_prefetch_bucket_size: 20000000}}"]


def save_before_the_first_step(config: str, overrides: list[str]) -> None:
    """A rank of the launch: the run's set-up, then its checkpoint at step 0."""
    from flanforge.launcher.config import load_config
    from flanforge.launcher.evaluation.periodic import PeriodicEval
    from flanforge.launcher.ranks.rank_exit import run_rank
    from flanforge.launcher.training.loop import cleanup, save, setup

    def main() -> None:
        run = setup(load_config(config, overrides), PeriodicEval)
        try:
            save(run)
        finally:
            cleanup(run)

    run_rank(main)


def peak_rss(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, float]:
    sys.path.insert(0, str(Path(__file__).parent))
    import vs_hf_trainer as vs

    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", vs.RSS_WRAPPER, *cmd], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return int(out.stdout.split("PEAK_RSS_KIB")[-1].split()[0]) * 1024, time.perf_counter() - start


def sampled_peaks(cmd: list[str]) -> tuple[int, int, float]:
    """(peak RSS, peak RssAnon, seconds) of ``cmd``, sampled from /proc every 20 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss = anon = 0
    while proc.poll() is None:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines())
            rss = max(rss, int(fields["VmRSS"].split()[0]) * 1024)
            anon = max(anon, int(fields["RssAnon"].split()[0]) * 1024)
        except (OSError, KeyError, ValueError):  # the process is ending
            pass
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr.read()[-3000:]}")
    return rss, anon, time.perf_counter() - start


def exported_elements(shard: Path) -> int:
    """The elements of the tensors in one safetensors file (its header only is read)."""
    from math import prod

    from safetensors import safe_open

    with safe_open(shard, "pt") as f:
        return sum(prod(f.get_slice(name).get_shape()) for name in f.keys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, help="num_hidden_layers (default: the config's)")
    parser.add_argument("--max-shard-size", default="1GB")
    parser.add_argument("--work", help="a directory to keep the run and the export in (default: a temporary one)")
    parser.add_argument("--save-step0", nargs="+", help=argparse.SUPPRESS)  # a rank: CONFIG OVERRIDES...
    args = parser.parse_args()
    if args.save_step0:
        return save_before_the_first_step(args.save_step0[0], args.save_step0[1:])

    from flanforge.launcher.config import load_config
    from flanforge.launcher.ranks.launch import rank_env
    from flanforge.launcher.ranks.process_group import free_port

    config = str(REPO / "configs/bench_1b.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        run = work / "run"
        overrides = [*TRAIN, f"output_dir={run}"] + ([f"model.hf_config.num_hidden_layers={args.layers}"]
                                                     if args.layers else [])
        cfg = load_config(config, overrides)
        ranks = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port",
                 str(free_port()), "--no_local_rank", __file__, "--save-step0", config, *overrides]
        train_rss, train_seconds = peak_rss(ranks, env={**rank_env(cfg), "OMP_NUM_THREADS": "1"})
        flanforge = str(Path(sys.executable).with_name("flanforge"))
        out = work / "export"
        rss, anon, seconds = sampled_peaks([flanforge, "export", str(run), "--out", str(out), "--max-shard-size",
                                            args.max_shard_size, "--overwrite"])
        shards = sorted(out.glob("model*.safetensors"))
        params = sum(exported_elements(shard) for shard in shards)
        fp32 = 4 * params
        print(f"{params / 1e6:.1f}M parameters, fp32 {fp32 / 2**30:.2f} GiB; set-up and save: peak RSS per rank "
              f"{train_rss / 2**30:.2f} GiB ({train_seconds:.0f} s); export to {len(shards)} shards of "
              f"<= {args.max_shard_size}: peak RSS {rss / 2**30:.2f} GiB = {rss / fp32:.3f} of fp32, of which anonymous "
              f"{anon / 2**30:.2f} GiB = {anon / fp32:.3f}; {seconds:.1f} s "
              f"({seconds / (fp32 / 1e9):.1f} s per fp32 GB)", flush=True)
        print(json.dumps(dict(params=params, fp32_bytes=fp32, rank_peak_rss=train_rss, export_peak_rss=rss,
                              export_peak_anon=anon, export_over_fp32=round(rss / fp32, 4),
                              export_anon_over_fp32=round(anon / fp32, 4), export_seconds=round(seconds, 1),
                              shards=len(shards), shard_bytes=[os.path.getsize(s) for s in shards])))


if __name__ == "__main__":
    main()
