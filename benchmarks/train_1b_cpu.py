"""A >=1B-parameter model trained on 2 CPU ranks with ZeRO-3 and CPU offload, saved and exported, its measured
peaks beside ``flanforge plan --device cpu``'s prediction (issue 26).

    OMP_NUM_THREADS=1 python benchmarks/train_1b_cpu.py               # 1.04B parameters: ~4 minutes, ~23 GiB of RAM
    OMP_NUM_THREADS=1 python benchmarks/train_1b_cpu.py --layers 4    # 0.2B: a quick check of the script itself

The model is ``configs/bench_1b.yaml``'s (TinyLlama's shape) with 23 layers instead of 22, so that it has over
1B parameters with the built-in suite's tokenizer (5,613 pieces). The tokenizer is trained first and given
as ``model.tokenizer_path``, as for any large run: train's memory pre-flight then counts the model's real
vocabulary, not ``model.vocab_size``, the upper bound of one the run would train (with it, this run is
predicted not to fit and refused). ``flanforge train`` runs it as a user would, with the overrides in
:data:`CPU_1B` (ZeRO-3, both offloads, bf16, recompute, small buckets: each is explained there), for 2
steps and a final checkpoint. Every 50 ms the resident memory of each process under the launcher is
read: a rank's peak (the kernel's own ``ru_maxrss`` of the largest child too) and the node's (all of
them at one moment). The plan is asked for the same config. Then ``flanforge export RUN
--max-shard-size 1GB`` runs under the same sampler: its peak RSS and the peak of its anonymous part
(DeepSpeed's lazy reader maps the checkpoint files, whose clean pages count in the RSS as page cache).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/bench_1b.yaml"
CPU_1B = [
    "launch.nproc_per_node=2", "launch.device=cpu", "mixture.num_workers=0", "eval.every_steps=0",
    "train.max_steps=2", "checkpoint.every_steps=0", "train.log_every=1",
    "mixture.seq_len=256", "train.micro_batch_size=1", "train.precision=bf16",
    "deepspeed.zero_stage=3", "deepspeed.offload_optimizer=true", "deepspeed.offload_param=true",
    "model.gradient_checkpointing=true",
    # One micro batch a step: gradients summed in bf16 lose nothing, and their partition is half the fp32 one.
    "deepspeed.grad_dtype=bf16",
    # Freed tensors' pages back to the OS at once, not kept in glibc's heap (launch.mmap_threshold in README).
    "launch.mmap_threshold=1MiB",
    # DeepSpeed's defaults size these for GPUs: 5e8-element buckets, 1e9 elements gathered and kept for reuse,
    # and one optimizer sub-group of up to 1e9 elements, whose AdamW step makes two fp32 temporaries its size.
    "deepspeed.extra={zero_optimization: {reduce_bucket_size: 20000000, stage3_prefetch_bucket_size: 20000000, "
    "stage3_max_live_parameters: 50000000, stage3_max_reuse_distance: 50000000, sub_group_size: 10000000}}",
]


def _status(pid: int) -> tuple[int, int]:
    """(RSS, anonymous RSS) of ``pid`` in bytes, from ``/proc/PID/status``."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["RssAnon"].split()[0]) * 1024


def sampled(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd``; its peaks from /proc every 50 ms: ``process`` (the largest process), ``anon`` (the
    largest anonymous part), ``node`` (all its processes at one moment); its ``seconds`` and ``log``."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        peaks = dict(process=0, anon=0, node=0)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            node = 0
            try:
                pids = [proc.pid, *(child.pid for child in root.children(recursive=True))]
            except psutil.Error:  # the command is ending
                pids = []
            for pid in pids:
                try:
                    rss, anon = _status(pid)
                except (OSError, KeyError, ValueError):  # a process that just ended
                    continue
                node += rss
                peaks["process"], peaks["anon"] = max(peaks["process"], rss), max(peaks["anon"], anon)
            peaks["node"] = max(peaks["node"], node)
            time.sleep(0.05)
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{text[-4000:]}")
    return dict(peaks, seconds=time.perf_counter() - start, log=text)


def exported_elements(shard: Path) -> int:
    """The elements of the tensors in one safetensors file (its header only is read)."""
    from math import prod

    from safetensors import safe_open

    with safe_open(shard, "pt") as f:
        return sum(prod(f.get_slice(name).get_shape()) for name in f.keys())


def predicted(overrides: list[str]) -> dict:
    """``flanforge plan --device cpu --json``'s row of the configured setting."""
    flanforge = str(Path(sys.executable).with_name("flanforge"))
    out = subprocess.run([flanforge, "plan", "--config", str(CONFIG), "--device", "cpu", "--json", *overrides],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["settings"][0]


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=23, help="num_hidden_layers (23: 1.04B parameters)")
    parser.add_argument("--max-shard-size", default="1GB")
    parser.add_argument("--work", help="a directory to keep the run and the export in (default: a temporary one)")
    args = parser.parse_args()

    from flanforge.launcher.config import load_config
    from flanforge.launcher.training.data import tokenizer_corpus
    from flanforge.mixtures.registry import load_mixture
    from flanforge.model.tokenizer import train_tokenizer

    flanforge = str(Path(sys.executable).with_name("flanforge"))
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        run = work / "run"
        cfg = load_config(CONFIG, [])
        tokenizer = train_tokenizer(tokenizer_corpus(load_mixture(cfg.mixture.name), cfg.seed), work / "tokenizer",
                                    cfg.model.vocab_size)
        vocab = tokenizer.vocab_size
        overrides = [*CPU_1B, f"model.hf_config.num_hidden_layers={args.layers}", f"output_dir={run}",
                     f"model.tokenizer_path={work / 'tokenizer'}"]
        train = sampled([flanforge, "train", "--config", str(CONFIG), *overrides],
                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        kernel_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest rank, exact
        losses = [float(line.split("| loss ")[1].split()[0]) for line in train["log"].splitlines() if "| loss " in line]
        plan = predicted(overrides)
        out = work / "export"
        export = sampled([flanforge, "export", str(run), "--out", str(out), "--max-shard-size", args.max_shard_size,
                          "--overwrite"])
        shards = sorted(out.glob("model*.safetensors"))
        params = sum(exported_elements(shard) for shard in shards)
        fp32 = 4 * params
        rank = max(kernel_max, train["process"])
        print(f"{params / 1e6:.1f}M parameters (vocab {vocab}), 2 CPU ranks, ZeRO-3 + offload: losses {losses}, "
              f"{train['seconds']:.0f} s with the save")
        print("| | predicted | measured | predicted / measured |\n| --- | --- | --- | --- |")
        print(f"| peak per rank | {gib(plan['total'])} | {gib(rank)} | {plan['total'] / rank:.3f} |")
        print(f"| peak per node | {gib(plan['cpu_node'])} | {gib(train['node'])} (with the launcher) | "
              f"{plan['cpu_node'] / train['node']:.3f} |")
        print(f"export to {len(shards)} shards of <= {args.max_shard_size}: peak RSS {gib(export['process'])} = "
              f"{export['process'] / fp32:.3f} of fp32 ({gib(fp32)}), of which anonymous {gib(export['anon'])} = "
              f"{export['anon'] / fp32:.3f}; {export['seconds']:.1f} s ({export['seconds'] / (fp32 / 1e9):.1f} s "
              f"per fp32 GB)", flush=True)
        print(json.dumps(dict(params=params, vocab=vocab, losses=losses, train_seconds=round(train["seconds"], 1),
                              rank_peak=rank, node_peak=train["node"], predicted_rank=plan["total"],
                              predicted_node=plan["cpu_node"], predicted_parts={k: plan[k] for k in (
                                  "params", "gradients", "optimizer", "gathered", "reused", "activations", "loss",
                                  "buckets", "overhead")},
                              export_peak=export["process"], export_anon=export["anon"],
                              export_seconds=round(export["seconds"], 1), fp32_bytes=fp32,
                              shard_bytes=[os.path.getsize(s) for s in shards])))


if __name__ == "__main__":
    main()
