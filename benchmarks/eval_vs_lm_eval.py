"""flanforge eval against lm-evaluation-harness: examples/s on the same model, prompts, examples and threads.

    python benchmarks/eval_vs_lm_eval.py                      # ../shared/data/mmlu_redux and gsm8k
    python benchmarks/eval_vs_lm_eval.py --quick              # a few examples of each (a smoke run)

One random-init model per architecture (a Llama-style decoder and a T5, ``--hidden``/``--layers``,
fp32, CPU), saved as a Hugging Face directory with the tokenizer flanforge's export writes
(SentencePiece trained here on the benchmark's text). Workloads:

- ``mmlu_5shot``: ``--subjects`` MMLU-Redux subjects, ``--per-subject`` test questions each, 5-shot,
  rank classification over A-D (decoder and T5);
- ``binary``: a two-option task (decoder), zero-shot;
- ``generation``: GSM8K 3-shot chain of thought, greedy, at most 256 new tokens or until "\n\nQ:" (decoder).

Each side runs end to end from the model directory, in this process, on ``--threads`` threads:
flanforge as ``flanforge eval MODEL --suites ... --convention lm-eval`` (model load, prompts, scoring,
outputs), lm-eval as ``HFLM(pretrained=MODEL)`` + ``simple_evaluate`` on task YAMLs written here whose
documents are flanforge's rendered prompts (MMLU: lm-eval's own MMLU template on the same CSVs, so the
prompts are built independently; they are checked equal). Each pair is timed ``--rounds`` times,
alternating; the speed-up is of the medians. Predictions (and for rank classification the
log-likelihoods, within 1e-4) are compared example by example. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from flanforge.launcher.cli import main as flanforge_main
from flanforge.launcher.evaluation.suites import build_suite
from flanforge.launcher.export.tokenizer import write_tokenizer
from flanforge.launcher.evaluation.mmlu import write_lm_eval_task
from flanforge.model.config import ModelConfig
from flanforge.model.load import build_model
from flanforge.model.tokenizer import train_tokenizer

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SUBJECTS = ("abstract_algebra", "high_school_geography", "philosophy", "virology")
BINARY_WORDS = ("good", "bad", "fine", "awful", "great", "poor", "lovely", "dull", "superb", "weak", "nice", "grim")


def write_mmlu(root: Path, source: Path, subjects: tuple[str, ...]) -> None:
    """A copy of the subjects' CSVs (flanforge's input) and lm-eval's MMLU task per subject."""
    for subject in subjects:
        for split in ("dev", "test"):
            (root / "data" / split).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / "data" / split / f"{subject}_{split}.csv",
                            root / "data" / split / f"{subject}_{split}.csv")
        write_lm_eval_task(root / "tasks", f"bench_mmlu_{subject}", subject,
                           root / "data" / "dev" / f"{subject}_dev.csv", root / "data" / "test" / f"{subject}_test.csv")


def write_yaml(folder: Path, name: str, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(json.dumps({"task": name, "dataset_path": "json", **config}, indent=1))


def write_rendered(root: Path, name: str, examples, config: dict) -> None:
    """lm-eval task ``name`` whose documents are flanforge's rendered examples (prompt, options, label)."""
    with open(root / f"{name}.jsonl", "w") as fh:
        for ex in examples:
            fh.write(json.dumps({"prompt": ex.prompt, "options": list(ex.options),
                                 "label": ex.correct[0] if ex.options else ex.references[0]}) + "\n")
    write_yaml(root / "tasks", name, {"dataset_kwargs": {"data_files": {"test": str(root / f"{name}.jsonl")}},
                                      "test_split": "test", "doc_to_text": "{{prompt}}", **config})


def write_binary(root: Path, n: int) -> Path:
    import yaml

    rows = [{"text": f"The film was {BINARY_WORDS[i % len(BINARY_WORDS)]} ({i}).",
             "label": "positive" if i % 2 == 0 else "negative", "opts": "positive|||negative"} for i in range(n + 4)]
    (root / "binary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = root / "bench_binary.yaml"
    spec.write_text(yaml.safe_dump({"task": "bench_binary", "source": {"path": "binary.jsonl", "holdout": {"validation": n}},
                                    "metric": "accuracy", "options_field": "opts",
                                    "templates": [{"id": "t", "input": "Review: {{ text }}\nSentiment:",
                                                   "target": "{{ label }}"}]}))
    [task] = build_suite(str(spec)).tasks
    write_rendered(root, "bench_binary", task.examples, {"output_type": "multiple_choice",
                                                         "doc_to_choice": "{{options}}", "doc_to_target": "label",
                                                         "metric_list": [{"metric": "acc"}]})
    return spec


def write_gsm8k(root: Path, source: Path, n: int) -> Path:
    folder = root / "gsm8k"
    folder.mkdir()
    for split, count in (("test", n), ("train", 3)):
        lines = (source / f"{split}.jsonl").read_text().splitlines()[:count]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    [task] = build_suite(f"gsm8k:{folder}", shots=3).tasks
    write_rendered(root, "bench_gsm8k", task.examples, {
        "output_type": "generate_until", "doc_to_target": "label",
        "generation_kwargs": {"until": list(task.stops), "do_sample": False, "max_gen_toks": task.max_new_tokens},
        "metric_list": [{"metric": "exact_match"}]})
    return folder


def export(root: Path, arch: str, texts: list[str], args) -> Path:
    tokenizer = train_tokenizer(texts, root / "tok", vocab_size=args.vocab)
    shape = ({"hidden_size": args.hidden, "intermediate_size": 4 * args.hidden, "num_hidden_layers": args.layers,
              "num_attention_heads": args.hidden // 64, "num_key_value_heads": args.hidden // 64,
              "max_position_embeddings": 8192} if arch == "decoder" else
             {"d_model": args.hidden, "d_ff": 4 * args.hidden, "d_kv": 64, "num_layers": args.layers,
              "num_decoder_layers": args.layers, "num_heads": args.hidden // 64})
    model = build_model(ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size, hf_config=shape), tokenizer, 0,
                        training=False)
    out = root / f"model_{arch}"
    model.save_pretrained(out)
    write_tokenizer(tokenizer, out, arch, 8192)
    return out


def run_flanforge(model: Path, suite: str, out: Path, extra: list[str]) -> list[dict]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert flanforge_main(["eval", str(model), "--suites", suite, "--convention", "lm-eval", "--out", str(out),
                               "--batch-size", "16", *extra]) == 0
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def run_lm_eval(model: Path, arch: str, tasks: Path, names: list[str], shots: int | None, limit: int | None):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    extra = {"add_bos_token": False} if arch == "decoder" else {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        lm = HFLM(pretrained=str(model), backend="causal" if arch == "decoder" else "seq2seq", device="cpu",
                  batch_size=16, dtype="float32", **extra)
        out = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=shots, limit=limit, log_samples=True,
                                      bootstrap_iters=0, task_manager=TaskManager(include_path=str(tasks)))
    return {n: sorted(out["samples"][n], key=lambda r: r["doc_id"]) for n in names}


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    """Examples whose prediction differs; for rank classification also the largest log-likelihood gap
    and whether every context was byte-identical."""
    diff, gap, same_prompt = 0, 0.0, True
    for mine, their in zip(ours, theirs):
        if "loglikelihoods" in mine:
            lls = [r[0][0] for r in their["resps"]]
            gap = max(gap, *(abs(a - b) for a, b in zip(mine["loglikelihoods"], lls)))
            diff += mine["options"].index(mine["prediction"]) != max(range(len(lls)), key=lls.__getitem__)
            same_prompt &= their["arguments"][0][0] == mine["prompt"]
        else:
            diff += mine["generation"].strip() != their["filtered_resps"][0].strip()
    return {"n": len(ours), "prediction_differences": diff, "max_loglikelihood_gap": gap, "same_prompts": same_prompt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mmlu", default=str(SHARED / "mmlu_redux"))
    parser.add_argument("--gsm8k", default=str(SHARED / "gsm8k"))
    parser.add_argument("--per-subject", type=int, default=25)
    parser.add_argument("--binary", type=int, default=200, help="binary-choice examples")
    parser.add_argument("--generate", type=int, default=16, help="GSM8K examples")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 questions a subject, 16 binary, 2 generations, 1 round")
    parser.add_argument("--only", nargs="+", default=None, help="workloads to run (mmlu_5shot, binary, generation)")
    args = parser.parse_args()
    if args.quick:
        args.per_subject, args.binary, args.generate, args.rounds = 4, 16, 2, 1
    torch.set_num_threads(args.threads)
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    root = Path(tempfile.mkdtemp(prefix="eval_vs_lm_eval."))
    os.environ["HF_DATASETS_CACHE"] = str(root / "datasets")
    write_mmlu(root / "mmlu", Path(args.mmlu), SUBJECTS)
    texts = [line for p in sorted((root / "mmlu").glob("data/*/*.csv")) for line in p.read_text().splitlines()]
    binary = write_binary(root, args.binary)
    gsm8k = write_gsm8k(root, Path(args.gsm8k), args.generate)
    texts += (gsm8k / "train.jsonl").read_text().splitlines() + (gsm8k / "test.jsonl").read_text().splitlines()
    models = {arch: export(root / arch, arch, texts, args) for arch in ("decoder", "t5")}

    mmlu_names = [f"bench_mmlu_{s}" for s in SUBJECTS]
    workloads = [  # (name, arch, flanforge suite, flanforge args, lm-eval tasks, shots, limit)
        ("mmlu_5shot", "decoder", f"mmlu:{root / 'mmlu'}", ["--shots", "5", "--max-examples", str(args.per_subject)],
         mmlu_names, 5, args.per_subject),
        ("mmlu_5shot", "t5", f"mmlu:{root / 'mmlu'}", ["--shots", "5", "--max-examples", str(args.per_subject)],
         mmlu_names, 5, args.per_subject),
        ("binary", "decoder", str(binary), [], ["bench_binary"], 0, None),
        ("generation", "decoder", f"gsm8k:{gsm8k}", ["--shots", "3"], ["bench_gsm8k"], 0, None),
    ]
    rows = []
    for name, arch, suite, extra, names, shots, limit in workloads:
        if args.only and name not in args.only:
            continue
        times = {"flanforge": [], "lm_eval": []}
        for r in range(args.rounds):
            start = time.perf_counter()
            ours = run_flanforge(models[arch], suite, root / f"out_{name}_{arch}_{r}", extra)
            times["flanforge"].append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = run_lm_eval(models[arch], arch, root / "mmlu" / "tasks" if name.startswith("mmlu") else root / "tasks",
                                 names, shots, limit)
            times["lm_eval"].append(time.perf_counter() - start)
        by_task = {}
        for record in ours:
            by_task.setdefault(record["task"], []).append(record)
        ours_sorted = [r for task in sorted(by_task) for r in sorted(by_task[task], key=lambda r: r["index"])]
        theirs_sorted = [s for n in sorted(names) for s in theirs[n]]
        check = compare(ours_sorted, theirs_sorted)
        median = {k: statistics.median(v) for k, v in times.items()}
        row = {"workload": name, "arch": arch, **check,
               "flanforge_examples_per_s": check["n"] / median["flanforge"],
               "lm_eval_examples_per_s": check["n"] / median["lm_eval"],
               "speedup": median["lm_eval"] / median["flanforge"], "seconds": median}
        rows.append(row)
        print(f"{name:12s} {arch:8s} n={check['n']:4d}  flanforge {row['flanforge_examples_per_s']:7.2f} ex/s  "
              f"lm-eval {row['lm_eval_examples_per_s']:7.2f} ex/s  x{row['speedup']:.2f}  "
              f"prediction differences {check['prediction_differences']}  max ll gap {check['max_loglikelihood_gap']:.1e}",
              file=sys.stderr)
    print(json.dumps({"threads": args.threads, "hidden": args.hidden, "layers": args.layers, "rows": rows}))


if __name__ == "__main__":
    main()
