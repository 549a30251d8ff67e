"""``flanforge plan``'s prediction against the measured peak of short CPU runs, and export's peak RSS.

    python benchmarks/plan_vs_measured.py                       # 2 sizes x ZeRO 1/2/3 x recompute off/on
    python benchmarks/plan_vs_measured.py --sizes tiny --stages 2
    python benchmarks/plan_vs_measured.py --sizes medium --mmap-threshold 1MiB   # glibc's threshold fixed
    python benchmarks/plan_vs_measured.py --fit OUTPUT...       # the CPU constants from earlier runs' output

Each run is ``flanforge train`` on the ``demo`` mixture (2 CPU ranks, fp32, micro batch 4, rows of 256
tokens, the fused loss, 2 steps, a checkpoint at the end), started under a wrapper that reports the
peak RSS of its largest descendant (``RUSAGE_CHILDREN``): the larger rank's peak. The prediction is
the plan's estimate for a CPU rank (``flanforge plan --device cpu``: model states with the offloaded
ones, activations with the CPU's attention, loss, buckets, gloo's copies, the optimizer step, and for
the framework and glibc's allocator ``CPU_RANK_BYTES`` and ``CPU_ALLOCATOR_SLACK``, which ``--fit`` fits
by least squares to the runs with glibc's default allocator). Then the largest model's ZeRO-3 run is
exported (``--max-shard-size 64MB``) under the same wrapper: peak RSS against the model's fp32 size.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZES = {  # Llama-style decoders, vocab 2000 (the demo's tokenizer)
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4),
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8),
    "medium": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12),
}
COMMON = ["train.max_steps=2", "checkpoint.every_steps=0", "mixture.seq_len=256", "train.micro_batch_size=4",
          "model.fused_loss=true", "launch.nproc_per_node=2", "eval.every_steps=0"]


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """(bytes, seconds): the peak RSS of ``cmd``'s largest descendant, and its wall time."""
    sys.path.insert(0, str(Path(__file__).parent))
    import vs_hf_trainer as vs

    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", vs.RSS_WRAPPER, *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{out.stderr[-3000:]}")
    kib = int(out.stdout.split("PEAK_RSS_KIB")[-1].split()[0])
    return kib * 1024, time.perf_counter() - start


def overrides_of(size: str, stage: int, ckpt: bool, mmap_threshold: str | None) -> list[str]:
    hf = "{" + ", ".join(f"{k}: {v}" for k, v in SIZES[size].items()) + "}"
    return [*COMMON, f"model.hf_config={hf}", f"deepspeed.zero_stage={stage}",
            f"model.gradient_checkpointing={str(ckpt).lower()}"] + (
        [f"launch.mmap_threshold={mmap_threshold}"] if mmap_threshold else [])


def predicted(overrides: list[str]) -> tuple[int, int]:
    """(the plan's total for a CPU rank, the part of it the allocator's slack scales: all but the framework)."""
    from flanforge.launcher.config import load_config
    from flanforge.launcher.planning import memory_plan as mp

    cfg = load_config(REPO / "configs/demo.yaml", overrides)
    e = mp.estimate(mp.workload(cfg, 2, 1, "cpu"), mp.configured_setting(cfg), cfg.train.micro_batch_size)
    return e.total, e.total - e.overhead


def fit(paths: list[str]) -> None:
    """Least squares over earlier runs' rows with glibc's default allocator: measured = framework +
    (1 + slack) x counted, with what this plan counts; then every row's ratio with the fitted constants."""
    runs = [run for path in paths for run in json.loads(Path(path).read_text().strip().splitlines()[-1])["runs"]]
    counted = [predicted(overrides_of(r["size"], r["zero"], r["ckpt"], r.get("mmap_threshold")))[1] for r in runs]
    default = [(c, r["measured"]) for c, r in zip(counted, runs) if not r.get("mmap_threshold")]
    n, sx, sy = len(default), sum(c for c, _ in default), sum(m for _, m in default)
    slope = (n * sum(c * m for c, m in default) - sx * sy) / (n * sum(c * c for c, _ in default) - sx * sx)
    framework = (sy - slope * sx) / n
    print(f"fitted over {n} runs: CPU_RANK_BYTES = {framework / 2**20:.0f} MiB, CPU_ALLOCATOR_SLACK = {slope - 1:.3f}")
    for c, r in zip(counted, runs):
        guess = framework + (1 if r.get("mmap_threshold") else slope) * c
        print(f"{r['size']:6} zero{r['zero']} ckpt={'on ' if r['ckpt'] else 'off'} "
              f"{r.get('mmap_threshold') or 'default':7} predicted {guess / 2**20:8.1f} MiB  "
              f"measured {r['measured'] / 2**20:8.1f} MiB  ratio {guess / r['measured']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(SIZES))
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--mmap-threshold", help="launch.mmap_threshold for the runs (default: glibc's own)")
    parser.add_argument("--fit", nargs="+", metavar="OUTPUT", help="fit the CPU constants to earlier runs' output (no training)")
    args = parser.parse_args()
    if args.fit:
        return fit(args.fit)
    flanforge = str(Path(sys.executable).with_name("flanforge"))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        shards = Path(work) / "shards"
        for size in args.sizes:
            for stage in args.stages:
                for ckpt in (False, True):
                    run = Path(work) / f"{size}-z{stage}-{ckpt}"
                    overrides = [*overrides_of(size, stage, ckpt, args.mmap_threshold), f"output_dir={run}",
                                 f"mixture.shards_dir={shards}"]
                    measured, seconds = peak_rss([flanforge, "train", "--config", str(REPO / "configs/demo.yaml"),
                                                  *overrides])
                    guess, _ = predicted(overrides)
                    rows.append(dict(size=size, zero=stage, ckpt=ckpt, mmap_threshold=args.mmap_threshold,
                                     predicted=guess, measured=measured, ratio=round(guess / measured, 3),
                                     seconds=round(seconds, 1)))
                    print(f"{size:6} zero{stage} ckpt={'on ' if ckpt else 'off'} predicted {guess / 2**20:8.1f} MiB"
                          f"  measured {measured / 2**20:8.1f} MiB  ratio {guess / measured:.3f}", flush=True)
        export = exported_peak(flanforge, Path(work), args.sizes[-1], 3)
    print(json.dumps({"runs": rows, "export": export}))


def exported_peak(flanforge: str, work: Path, size: str, stage: int) -> dict:
    """Peak RSS and seconds of exporting the ``size`` ZeRO-``stage`` run (no recompute) at --max-shard-size 64MB."""
    from flanforge.launcher.config import load_config
    from flanforge.launcher.planning.model_shape import model_shape

    run = work / f"{size}-z{stage}-False"
    cfg = load_config(run / "config.yaml")
    fp32 = model_shape(cfg.model).params * 4
    rss, seconds = peak_rss([flanforge, "export", str(run), "--out", str(work / "export"), "--max-shard-size", "64MB"])
    print(f"export {size} zero{stage}: peak RSS {rss / 2**20:.1f} MiB for {fp32 / 2**20:.1f} MiB of fp32 weights "
          f"({seconds:.1f} s)", flush=True)
    return dict(size=size, zero=stage, fp32_bytes=fp32, peak_rss=rss, seconds=round(seconds, 1))


if __name__ == "__main__":
    main()
