"""Attention implementations A/B on CPU: one training forward + backward per packed micro-batch, one process.

    python benchmarks/attention_cpu.py                         # segments vs sdpa_mask, DialogSum rows of 512
    python benchmarks/attention_cpu.py --impls segments sdpa_mask eager_mask --rounds 7

The set-up of ``benchmarks/vs_hf_trainer.py`` (its DialogSum examples, tokenizer
and 4-layer 256-wide Llama), without DeepSpeed and ranks: the examples are
packed into rows of ``--max-len`` by flanforge's packer (first-fit decreasing),
and ``--batches`` micro-batches (rows drawn at random) of ``--micro-batch`` rows go through
``TrainingModel`` (the training forward, the loss as ``model.fused_loss: auto``
picks it) and its backward, at one thread. Every round times each
implementation on every micro-batch, alternating, so a change in the machine's
load hits each; the figures are each implementation's minimum and median over
the rounds of its summed wall time (the minimum is the least disturbed run;
the CPU time of the process is reported too). Two ranks sharing two cores
amplify any other load, which is why this A/B runs in one process. The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def micro_batches(hf_data: Path, args: argparse.Namespace, pad_id: int, eos_id: int) -> list[dict]:
    """``--batches`` micro-batches of packed rows, drawn at random (tensors as the training forward reads them)."""
    from flanforge.mixtures.streaming.packing import Packer, stack_rows

    packer = Packer("decoder", args.max_len, args.max_len, "truncate", False, pad_id, eos_id)
    examples = []
    for line in hf_data.read_text().splitlines():  # input_ids = inputs + targets (EOS included), fitted already
        ex = json.loads(line)
        n_in = sum(1 for label in ex["labels"] if label == -100)
        examples.append((ex["input_ids"][:n_in], ex["input_ids"][n_in:]))
    rows = [packer.row([examples[i] for i in row]) for row in packer.pack([[len(a) + len(b)] for a, b in examples])]
    random.Random(0).shuffle(rows)  # first-fit decreasing puts the longest examples, one per row, first
    size = args.micro_batch
    return [stack_rows(rows[i: i + size]) for i in range(0, size * args.batches, size)]


def timed_step(model, batch: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of one forward + backward."""
    wall, cpu = time.perf_counter(), time.process_time()
    loss, _ = model(batch)
    loss.backward()
    out = time.perf_counter() - wall, time.process_time() - cpu
    model.zero_grad(set_to_none=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impls", nargs="+", default=["segments", "sdpa_mask"])
    p.add_argument("--batches", type=int, default=3, help="micro-batches timed per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--data", help="DialogSum JSONL (default: vs_hf_trainer's)")
    p.add_argument("--workdir", help="vs_hf_trainer's work directory to reuse (data, tokenizer)")
    args = p.parse_args()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from flanforge.model import attention
    from flanforge.model.training_forward import TrainingModel, use_fused_loss

    sys.path.insert(0, str(Path(__file__).parent))
    import vs_hf_trainer as vs

    torch.set_num_threads(1)
    args.data = args.data or str(vs.DEFAULT_DATA)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="attention-cpu-"))
    work.mkdir(parents=True, exist_ok=True)
    _, hf_data, model_kwargs = vs.prepare_data(args, work)
    batches = micro_batches(hf_data, args, model_kwargs["pad_token_id"], model_kwargs["eos_token_id"])
    torch.manual_seed(1234)
    hf = LlamaForCausalLM(LlamaConfig(**model_kwargs))
    model = TrainingModel(hf, arch="decoder", fused=use_fused_loss("auto", "cpu"), zero_stage=0)
    load_before = os.getloadavg()[0]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in args.impls}
    for _ in range(args.rounds + 1):  # the first round warms up and is left out
        for name in args.impls:
            attention.use(hf, name)
            model.attention = name
            steps = [timed_step(model, b) for b in batches]
            times[name].append((sum(w for w, _ in steps), sum(c for _, c in steps)))
    result = {"micro_batch": args.micro_batch, "max_len": args.max_len, "batches": args.batches,
              "rounds": args.rounds, "examples_per_row": round(sum(int(b["segment_ids"].max(1).values.sum())
                                                                   for b in batches) / (len(batches) * args.micro_batch), 2),
              "loadavg_before": load_before}
    for name, runs in times.items():
        wall = [w for w, _ in runs[1:]]
        result[name] = {"min_s": round(min(wall), 3), "median_s": round(statistics.median(wall), 3),
                        "cpu_min_s": round(min(c for _, c in runs[1:]), 3)}
    first = args.impls[0]
    for name in args.impls[1:]:
        result[f"{name}_over_{first}_min"] = round(result[name]["min_s"] / result[first]["min_s"], 3)
        result[f"{name}_over_{first}_median"] = round(result[name]["median_s"] / result[first]["median_s"], 3)
    result["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
