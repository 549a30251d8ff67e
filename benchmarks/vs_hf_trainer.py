"""Training throughput of flanforge against Hugging Face Trainer + DeepSpeed, side by side.

    python benchmarks/vs_hf_trainer.py                     # ZeRO-2, 40 steps each, 10 of warm-up
    python benchmarks/vs_hf_trainer.py --zero 3
    python benchmarks/vs_hf_trainer.py --quick             # a handful of steps, short rows (CI)
    python benchmarks/vs_hf_trainer.py --flanforge model.fused_loss=false   # extra overrides
    python benchmarks/vs_hf_trainer.py --baseline /work/main/.venv/bin/flanforge   # also another flanforge install
    python benchmarks/vs_hf_trainer.py --variant sdpa_mask model.attention=sdpa_mask   # also flanforge with these overrides
    python benchmarks/vs_hf_trainer.py --repeats 2         # flanforge, HF, flanforge, HF: medians and per-pair ratios

Both systems, in one invocation, get the same data, model, tokenizer, ZeRO
stage, ranks, micro-batch and maximum length:

- data: DialogSum's dev split (``--data``), rendered once with one fixed
  template (``Summarize this dialogue.`` + the dialogue -> the summary) into a
  Flan-collection JSONL, which flanforge reads as a task and the HF side reads
  tokenised exactly as flanforge's packer tokenises it (inputs, targets, EOS;
  inputs cut from the left beyond the maximum length);
- tokenizer: a SentencePiece model (vocab ``--vocab``) trained once on those texts;
- model: the same 4-layer, 256-wide Llama, randomly initialised from one seed;
- 2 CPU ranks started by DeepSpeed's launcher, one torch thread each, AdamW,
  constant LR, gradient clipping 1.0, micro-batch 8, no accumulation, fp32.

flanforge packs rows of ``--max-len`` tokens; HF Trainer pads each batch to its
longest example with ``DataCollatorForSeq2Seq`` and shuffles, its users' default.
Both compute the loss on the targets only and log every step.

Figures: the time of a step is the wall-clock time between the ends of
consecutive optimizer steps (TensorBoard event times for flanforge, a
``TrainerCallback`` for HF), so everything a step does is in it. Steady state
is the steps after ``--warmup``: useful (non-pad) tokens/s, all tokens/s,
padding efficiency, all summed over both ranks. Peak RSS is the largest
resident set of any process of the run (``RUSAGE_CHILDREN`` of a wrapper
process per system), i.e. the peak of the larger rank. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# ../shared/data next to the checkout (a worktree one level deeper finds it one more level up).
DATA_CANDIDATES = [up / "shared" / "data" / "dialogsum" / "dialogsum.dev.jsonl" for up in (REPO.parent, REPO.parent.parent)]
DEFAULT_DATA = next((c for c in DATA_CANDIDATES if c.is_file()), DATA_CANDIDATES[0])
INSTRUCTION = "Summarize this dialogue."
MODEL = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False)
# Runs a command and prints the peak RSS (KiB) of its largest descendant as the last line.
FlanforgeRun = tuple[str, str, list[str]]
"""A flanforge system of the comparison: (name, ``flanforge`` executable, its extra overrides)."""
RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def prepare_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path, dict]:
    """The Flan JSONL (flanforge's input), the tokenizer, and the HF side's tokenised examples."""
    from flanforge.mixtures.streaming.packing import Packer
    from flanforge.mixtures.sources.flan_jsonl import flan_mixture
    from flanforge.model.tokenizer import load_tokenizer, train_tokenizer

    flan = work / "dialogsum_flan.jsonl"
    records = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    with flan.open("w") as f:
        for r in records:
            f.write(json.dumps({"inputs": f"{INSTRUCTION}\n\n{r['dialogue'].strip()}", "targets": r["summary"].strip(),
                                "task_name": "dialogsum", "task_source": "Dialog", "template_type": "zs_noopt"}) + "\n")
    # Render through flanforge's own task, so both sides see exactly the text flanforge trains on.
    task = flan_mixture(flan, "dialogsum_bench").tasks()[0]
    import random

    examples = [task.render(r, random.Random(0), i) for i, r in enumerate(task.records("train"))]
    tok_dir = work / "tokenizer"
    if not tok_dir.is_dir():
        train_tokenizer([t for ex in examples for t in (ex.inputs, ex.targets)], tok_dir, args.vocab)
    tok = load_tokenizer(tok_dir)
    packer = Packer("decoder", args.max_len, args.max_len, "truncate", False, tok.pad_id, tok.eos_id)
    hf_rows = []
    for inp, tgt in zip(tok.encode_batch([e.inputs for e in examples]), tok.encode_batch([e.targets for e in examples])):
        inp, tgt, _ = packer.fit(inp, tgt)
        hf_rows.append(json.dumps({"input_ids": inp + tgt, "labels": [-100] * len(inp) + tgt}))
    hf_data = work / "hf_examples.jsonl"
    hf_data.write_text("\n".join(hf_rows) + "\n")
    model = {**MODEL, "vocab_size": tok.vocab_size, "pad_token_id": tok.pad_id, "eos_token_id": tok.eos_id,
             "bos_token_id": tok.bos_id}
    return flan, hf_data, model


def run_wrapped(cmd: list[str], env: dict[str, str], log: Path) -> int:
    """Run ``cmd`` (its output to ``log``); return the peak RSS in KiB of its largest process."""
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} ... failed (exit {proc.returncode}); its log {log} ends:\n{text[-3000:]}")
    return int(text.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])


def rank_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONSAFEPATH="1")
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
    return env


def write_flanforge_config(args: argparse.Namespace, work: Path, flan: Path, steps: int, name: str) -> Path:
    """flanforge's config for the benchmark (output in ``work/<name>_z<stage>``), its path."""
    cfg = {
        "output_dir": str(work / f"{name}_z{args.zero}"), "seed": 1234,
        "model": {"arch": "decoder", "tokenizer_path": str(work / "tokenizer"),
                  "hf_config": {k: v for k, v in MODEL.items() if k != "max_position_embeddings"}},
        "mixture": {"name": str(work / "mixture.yaml"), "seq_len": args.max_len, "shards_dir": str(work / "shards")},
        "train": {"max_steps": steps, "micro_batch_size": args.micro_batch, "lr": 1e-3, "log_every": 1},
        "checkpoint": {"every_steps": 0},
        "deepspeed": {"zero_stage": args.zero},
        # A free port per run: flanforge refuses a configured one that the previous run's socket still holds.
        "launch": {"nproc_per_node": 2, "threads_per_rank": 1, "master_port": 0},
    }
    (work / "mixture.yaml").write_text(yaml.safe_dump({"mixture": "dialogsum_bench", "members": [{"flan_jsonl": str(flan)}]}))
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_flanforge(args: argparse.Namespace, work: Path, flan: Path, steps: int, run: "FlanforgeRun") -> dict:
    name, exe, overrides = run
    config = write_flanforge_config(args, work, flan, steps, name)
    out = work / f"{name}_z{args.zero}"
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = [exe, "train", "--config", str(config), *args.flanforge, *overrides]
    rss = run_wrapped(cmd, rank_env(), work / f"{name}_z{args.zero}.log")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    ends = [e.wall_time for e in events.Scalars("train/loss")]
    eff = [e.value for e in events.Scalars("train/padding_efficiency")]
    per_step = 2 * args.micro_batch * args.max_len  # packed rows: every step holds the same tokens
    return steady_state(ends, [(e * per_step, per_step) for e in eff], args.warmup, rss)


def run_hf(args: argparse.Namespace, work: Path, hf_data: Path, model: dict, steps: int) -> dict:
    out = work / f"hf_z{args.zero}"
    out.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", str(args.port + 1),
           "--no_local_rank", str(Path(__file__).with_name("hf_trainer_rank.py")),
           "--data", str(hf_data), "--out", str(out), "--zero", str(args.zero), "--steps", str(steps),
           "--micro-batch", str(args.micro_batch), "--model", json.dumps(model)]
    rss = run_wrapped(cmd, rank_env(), work / f"hf_z{args.zero}.log")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    # Batch i of every rank belongs to step i (the collator may run one batch ahead; the sums over a window agree).
    batches = [(sum(r["batches"][i][0] for r in ranks), sum(r["batches"][i][1] for r in ranks)) for i in range(steps)]
    return steady_state(ranks[0]["step_ends"], batches, args.warmup, rss)


def steady_state(ends: list[float], batches: list[tuple[float, float]], warmup: int, rss_kib: int) -> dict:
    """Figures over the steps after ``warmup``: ``ends[i]`` is when step i ended, ``batches[i]`` its (useful, all) tokens."""
    if len(ends) <= warmup + 1:
        raise SystemExit(f"only {len(ends)} steps recorded; need more than --warmup {warmup} + 1")
    seconds = ends[-1] - ends[warmup]
    useful = sum(b[0] for b in batches[warmup + 1: len(ends)])
    total = sum(b[1] for b in batches[warmup + 1: len(ends)])
    return {
        "steps_timed": len(ends) - warmup - 1,
        "seconds": round(seconds, 2),
        "useful_tokens_per_s": round(useful / seconds, 1),
        "all_tokens_per_s": round(total / seconds, 1),
        "padding_efficiency": round(useful / total, 4),
        "peak_rss_mib_per_rank": round(rss_kib / 1024, 1),
    }


def flanforge_runs(args: argparse.Namespace) -> list[FlanforgeRun]:
    """The flanforge systems asked for: this install, ``--variant``s, ``--baseline``."""
    exe = str(Path(sys.executable).parent / "flanforge")
    runs = [("flanforge", exe, [])] if "flanforge" in args.systems.split(",") else []
    runs += [(name, exe, overrides) for name, *overrides in args.variant]
    if args.baseline:
        runs.append(("baseline", args.baseline, []))
    names = [name for name, _, _ in runs]
    if len(set(names)) < len(names) or "hf_trainer" in names:
        raise SystemExit(f"--variant names must differ from each other and from flanforge/baseline/hf_trainer: {names}")
    return runs


def run_interleaved(args: argparse.Namespace, work: Path, flan: Path, hf_data: Path, model: dict) -> dict[str, list[dict]]:
    """Every system ``--repeats`` times, interleaved, so a change in the machine's load hits each: name -> runs.
    Each run's figures are printed as it ends (a run cut short by a timeout keeps the ones before it)."""
    ours = flanforge_runs(args)
    order = [(run[0], functools.partial(run_flanforge, args, work, flan, args.steps, run)) for run in ours]
    if "hf" in args.systems.split(","):
        order.insert(min(1, len(order)), ("hf_trainer", functools.partial(run_hf, args, work, hf_data, model, args.steps)))
    runs: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for name, measure in order:
            runs.setdefault(name, []).append(measure())
            print(f"repeat {repeat + 1} {name}", runs[name][-1], f"load {os.getloadavg()[0]:.2f}", flush=True)
    return runs


def ratios(runs: dict[str, list[dict]], medians: dict) -> dict:
    """Useful-token ratios of the medians and of each repeat: every flanforge system against HF Trainer,
    and the variants and baseline against flanforge."""
    def ratio(a: dict, b: dict, key: str = "useful_tokens_per_s") -> float:
        return round(a[key] / b[key], 3)

    out: dict = {}
    ours = [name for name in runs if name != "hf_trainer"]
    if "hf_trainer" in runs:
        for name in ours:
            prefix = "" if name == "flanforge" else f"{name}_"
            out[f"{prefix}useful_tokens_ratio"] = ratio(medians[name], medians["hf_trainer"])
            out[f"{prefix}all_tokens_ratio"] = ratio(medians[name], medians["hf_trainer"], "all_tokens_per_s")
            out[f"{prefix}useful_tokens_ratio_per_repeat"] = [ratio(a, b) for a, b in zip(runs[name], runs["hf_trainer"])]
    if "flanforge" in runs:
        for name in (n for n in ours if n != "flanforge"):
            out[f"flanforge_vs_{name}"] = ratio(medians["flanforge"], medians[name])
            out[f"flanforge_vs_{name}_per_repeat"] = [ratio(a, b) for a, b in zip(runs["flanforge"], runs[name])]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zero", type=int, default=2, choices=(1, 2, 3))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the steady state")
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="DialogSum JSONL (dialogue, summary)")
    p.add_argument("--workdir", help="keep data, tokenizer, shards and logs here (default: a temp dir)")
    p.add_argument("--port", type=int, default=29611, help="HF Trainer's master port is this + 1 (flanforge finds a free one)")
    p.add_argument("--systems", default="flanforge,hf")
    p.add_argument("--flanforge", nargs="*", default=[], metavar="KEY=VALUE", help="extra flanforge overrides")
    p.add_argument("--repeats", type=int, default=1, help="run the systems this many times, interleaved; medians reported")
    p.add_argument("--baseline", metavar="FLANFORGE", help="another flanforge executable to measure too (before/after)")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME [KEY=VALUE ...]",
                   help="also flanforge with these overrides, reported as NAME (repeatable; A/B in one invocation)")
    p.add_argument("--quick", action="store_true", help="6 steps, 2 of warm-up, rows of 128 tokens")
    args = p.parse_args()
    if args.quick:
        args.steps, args.warmup, args.max_len = 6, 2, 128
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vs-hf-"))
    work.mkdir(parents=True, exist_ok=True)
    flan, hf_data, model = prepare_data(args, work)
    results: dict = {"zero_stage": args.zero, "ranks": 2, "micro_batch": args.micro_batch, "max_len": args.max_len,
                     "vocab": model["vocab_size"], "steps": args.steps, "warmup": args.warmup,
                     "flanforge_overrides": args.flanforge, "loadavg_before": os.getloadavg()[0]}
    runs = run_interleaved(args, work, flan, hf_data, model)
    for name, figures in runs.items():  # the median run of each system (by useful tokens/s)
        results[name] = sorted(figures, key=lambda f: f["useful_tokens_per_s"])[(len(figures) - 1) // 2]
        results[f"{name}_runs_useful_tokens_per_s"] = [f["useful_tokens_per_s"] for f in figures]
    results.update(ratios(runs, results))
    results["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
