"""CPU ranks with glibc's default allocator against a fixed mmap threshold (``launch.mmap_threshold``):
peak RSS per rank and training speed.

    OMP_NUM_THREADS=1 python benchmarks/host_allocator.py                 # ~10 minutes
    OMP_NUM_THREADS=1 python benchmarks/host_allocator.py --stages 3 --repeats 1

Each run is ``flanforge train`` on ``demo`` (2 CPU ranks, fp32, a 76.6M-parameter decoder, micro batch
4, rows of 256 tokens, recompute on, ``--steps`` steps), with glibc's default (its threshold rises with
what is freed) or ``launch.mmap_threshold`` at each of ``--thresholds``, the settings alternating
``--repeats`` times. Peak: the larger rank's ``ru_maxrss``; speed: the median
tokens/s of the logged steps after the first two. Ratios are of medians, against glibc's default.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import plan_vs_measured as pvm  # noqa: E402  (its model sizes and common overrides)
import vs_hf_trainer as vs  # noqa: E402  (the peak-RSS wrapper)

def run(stage: int, threshold: str | None, steps: int, work: Path) -> tuple[int, float]:
    """(peak RSS of the larger rank, median tokens/s) of one training run."""
    hf = "{" + ", ".join(f"{k}: {v}" for k, v in pvm.SIZES["medium"].items()) + "}"
    out = Path(tempfile.mkdtemp(prefix=f"z{stage}-", dir=work))  # a fresh run each time (a run dir resumes)
    common = [o for o in pvm.COMMON if not o.startswith("train.max_steps=")]
    overrides = [*common, f"train.max_steps={steps}", "train.log_every=1", f"model.hf_config={hf}",
                 f"deepspeed.zero_stage={stage}", "model.gradient_checkpointing=true", f"output_dir={out}",
                 f"mixture.shards_dir={work / 'shards'}"] + ([f"launch.mmap_threshold={threshold}"] if threshold else [])
    flanforge = str(Path(sys.executable).with_name("flanforge"))
    proc = subprocess.run([sys.executable, "-c", vs.RSS_WRAPPER, flanforge, "train", "--config",
                           str(pvm.REPO / "configs/demo.yaml"), *overrides], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"})
    if proc.returncode != 0:
        raise SystemExit(f"training failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    speeds = [float(line.split("tokens_per_sec ")[1].split()[0]) for line in (proc.stdout + proc.stderr).splitlines()
              if "tokens_per_sec " in line]
    if len(speeds) < 3:
        raise SystemExit(f"expected {steps} logged steps, found {len(speeds)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return int(proc.stdout.split("PEAK_RSS_KIB")[-1].split()[0]) * 1024, statistics.median(speeds[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--thresholds", nargs="+", default=["1MiB", "4MiB"], help="launch.mmap_threshold values")
    args = parser.parse_args()
    settings = {"default": None, **{t: t for t in args.thresholds}}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for stage in args.stages:
            got: dict[str, list[tuple[int, float]]] = {name: [] for name in settings}
            for _ in range(args.repeats):
                for name, threshold in settings.items():
                    got[name].append(run(stage, threshold, args.steps, Path(scratch)))
            med = {name: (statistics.median(p for p, _ in v), statistics.median(t for _, t in v))
                   for name, v in got.items()}
            base = med["default"]
            for name, (peak, speed) in med.items():
                row = dict(zero=stage, mmap_threshold=settings[name], peak=peak, tokens_per_s=speed,
                           peak_ratio=round(peak / base[0], 3), speed_ratio=round(speed / base[1], 3), runs=got[name])
                rows.append(row)
                print(f"ZeRO-{stage} {name:8}: peak RSS {peak / 2**20:6.0f} MiB ({row['peak_ratio']}x), tokens/s "
                      f"{speed:6.1f} ({row['speed_ratio']}x)", flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
