"""``flanforge eval MODEL --suites ... --out DIR``: score a model on evaluation suites
(``evaluation/run.py`` says what MODEL may be and what is written)."""

from __future__ import annotations

import argparse

from flanforge.launcher.evaluation.suites import KINDS
from flanforge.mixtures.sources.base import POLICIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a run directory (latest checkpoint), RUN_DIR:TAG, a Hugging Face model directory, "
                             "or untuned:RUN_DIR (the run's starting weights)")
    parser.add_argument("--suites", nargs="+", required=True, metavar="NAME_OR_YAML",
                        help="suites: a mixture name (demo, builtin_heldout, ...), builtin_heldin, a task/mixture "
                             "YAML file, bbh:DIR, bbh_cot:DIR, gsm8k:DIR, mmlu:DIR, mmlu_cot:DIR, flan2022_heldout")
    parser.add_argument("--out", required=True, metavar="DIR", help="where results.json, report.md, ... go")
    parser.add_argument("--split", default=None, choices=("validation", "test"),
                        help="the split of the suites' tasks to score (default: validation; MMLU: test; "
                             "BBH and GSM8K have one test set)")
    parser.add_argument("--max-examples", type=int, default=None, metavar="N", help="at most N examples per task")
    parser.add_argument("--shots", type=int, default=None, metavar="K",
                        help="exemplars per few-shot prompt (default 3, MMLU 5; with --shots > 0 the default format "
                             "is few_shot)")
    parser.add_argument("--formats", nargs="+", choices=KINDS, default=None,
                        help="format kinds to score (default: zero_shot, or few_shot when --shots > 0)")
    parser.add_argument("--compare", metavar="OTHER_DIR", help="a baseline's results.json (or its directory)")
    parser.add_argument("--convention", default=None, metavar="NAME",
                        help="how rank classification scores an option: t5x (its tokens + EOS) or lm-eval (the "
                             "continuation as lm-evaluation-harness builds it); default: a run's eval.convention, "
                             "else t5x for T5, lm-eval for decoders")
    parser.add_argument("--data", nargs="+", default=None, metavar="BENCHMARK=DIR",
                        help="flan2022_heldout's data directories: mmlu=DIR bbh=DIR gsm8k=DIR (default: a run's "
                             "eval.data); a benchmark left out is reported as not run")
    parser.add_argument("--cot-prompts", default=None, metavar="FILE",
                        help="Flan's MMLU chain-of-thought exemplars, a JSON object subject -> prompt (lm-eval's "
                             "mmlu/flan_cot_fewshot/_cot_prompts.json layout): needed by mmlu_cot")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples (or options) per forward (default: a run's eval.batch_size, else 16)")
    parser.add_argument("--on-bad-record", choices=POLICIES, default="error",
                        help="a malformed record of a suite's files: an error (default), or skipped and counted "
                             "per task in results.json and report.md")
    parser.add_argument("--encoding", metavar="NAME",
                        help="text encoding of bbh:/gsm8k:/mmlu: directories' files (default UTF-8, with or without "
                             "BOM; e.g. cp1252); a task YAML declares its own (encoding:)")


def run(args: argparse.Namespace) -> int:
    from flanforge.launcher.evaluation.run import evaluate

    return evaluate(args)
