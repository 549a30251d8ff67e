"""Score a model on evaluation suites (``flanforge eval MODEL --suites ... --out DIR``: ``commands/eval.py``).

``MODEL`` is a run directory (its ``latest`` checkpoint, consolidated straight
from the ZeRO shards as ``flanforge export`` does), ``RUN_DIR:TAG`` (a tag or a
step number), a Hugging Face model directory, or ``untuned:RUN_DIR`` (the
weights the run started from: its ``model.path``, or its seeded random init).
A run's ``eval:`` section supplies the settings the command line leaves out
(:data:`RUN_SETTINGS`: the scoring convention, the batch size, flan2022_heldout's data).

In a rank started by ``deepspeed``, ``torchrun`` or ``srun`` it is one rank of a
data-parallel evaluation (``evaluator.py``): every rank builds the same
suites, runs its share of the batches, and rank 0 gathers, scores and writes
``DIR/results.json``, ``predictions.jsonl``, ``report.md`` and the plots
(``report.py``). Started plainly it is one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

from flanforge.arguments import at_least, writable_dir
from flanforge.constants import SCORING_CONVENTIONS
from flanforge.errors import UserError, did_you_mean
from flanforge.text import check_encoding
from flanforge.launcher.config import EvalConfig
from flanforge.launcher.training.rundir import RunDir
from flanforge.launcher.evaluation import benchmarks, heldout
from flanforge.launcher.evaluation.suites import check_suite_spec

UNTUNED = "untuned:"


def check_arguments(args: argparse.Namespace) -> dict[str, Any] | None:
    """Every argument checked before anything loads: numbers, MODEL's form and place, the encoding, that
    ``--out`` can be written, the ``--compare`` file's shape (returned, or None)."""
    from flanforge.launcher.evaluation.report import load_results

    at_least(args.max_examples, 1, "--max-examples")
    at_least(args.shots, 0, "--shots")
    at_least(args.batch_size, 1, "--batch-size")
    if args.encoding is not None:
        check_encoding(args.encoding, "--encoding")
    if args.convention is not None and args.convention not in SCORING_CONVENTIONS:
        raise UserError(f"--convention: unknown scoring convention '{args.convention}' (conventions: "
                        f"{', '.join(SCORING_CONVENTIONS)}){did_you_mean(args.convention, SCORING_CONVENTIONS)}")
    for flag, values in (("--suites", args.suites), ("--formats", args.formats or [])):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise UserError(f"{flag} names {', '.join(twice)} twice; name each once")
    for suite in args.suites:
        if suite != heldout.NAME:  # a composite: its components are checked by heldout.plan
            check_suite_spec(suite)
    spec = args.model
    root = spec[len(UNTUNED):] if spec.startswith(UNTUNED) else spec
    if not Path(spec).is_dir() and ":" in root:
        root, tag = root.rsplit(":", 1)
        if not tag.strip():
            raise UserError(f"MODEL {spec}: no checkpoint tag after ':' (RUN_DIR:TAG, e.g. {root or 'RUN_DIR'}:300 "
                            f"or :step_00000300; RUN_DIR alone means its latest checkpoint)")
    if not root or not Path(root).is_dir():
        raise UserError(f"MODEL {spec}: no such run or model directory")
    if args.data is not None:
        args.data = heldout.parse_data(args.data)
    heldout.check_readers(args.suites, data=args.data is not None, cot_prompts=args.cot_prompts is not None)
    writable_dir(args.out, "--out")
    return load_results(args.compare) if args.compare else None


def evaluate(args: argparse.Namespace) -> int:
    """The evaluation ``flanforge eval`` asks for (its arguments: ``commands/eval.py``); 0 on success."""
    baseline = check_arguments(args)
    import torch

    from flanforge.launcher.ranks.process_group import start_rank
    from flanforge.launcher.export.shards import DTYPES
    from flanforge.launcher.training.engine import training_precision
    from flanforge.launcher.evaluation.report import read_history, results_dict, write_outputs
    from flanforge.launcher.evaluation.evaluator import Evaluator
    from flanforge.launcher.evaluation.scoring import Scorer, dense_attention, get_convention, max_length

    layout, device = start_rank(group_if_alone=False)
    distributed = layout.world_size > 1
    tokenizer, arch, build, run_dir, precision, run_eval = load_model(args.model)
    args = with_run_settings(args, run_eval)
    convention = get_convention(args.convention, arch)
    suites, plans = build_suites(args, lambda text: len(tokenizer.encode(text)))
    model = build()
    gather = None
    if distributed:
        def gather(obj):
            out = [None] * layout.world_size
            torch.distributed.all_gather_object(out, obj)
            return out
    dense_attention(model, device.type)  # a run trained with flex or segments: scored with dense masks
    dtype = DTYPES[training_precision(precision, device.type)]  # as it trained: bf16 on GPUs that have it
    scorer = Scorer(model.to(device, dtype), arch, tokenizer.pad_id, tokenizer.eos_id, device, convention)
    evaluator = Evaluator(scorer, tokenizer, batch_size=args.batch_size, rank=layout.rank,
                          world_size=layout.world_size, gather=gather, max_length=max_length(model, arch))
    results = evaluator.run(suites)
    if results is not None:
        data = results_dict(args.model, args.split or "validation", results, convention.name,
                            {name: heldout.table(results, plan) for name, plan in plans.items()})
        history = read_history(run_dir.eval_history) if run_dir is not None else None
        write_outputs(Path(args.out), data, results, baseline, history)
        for name, suite in data["suites"].items():
            means = ", ".join(f"{m} {v:.1f}" for m, v in suite["mean"].items())
            print(f"flanforge eval: {name}: {len(suite['tasks'])} tasks; {means}", file=sys.stderr)
        print(Path(args.out) / "results.json")
    return 0  # a rank ends through cli.entry (launcher/ranks/rank_exit.py)


RUN_SETTINGS = ("convention", "batch_size", "data")
"""``flanforge eval`` options a run's ``eval:`` section also sets (same names): the command line wins."""


def with_run_settings(args: argparse.Namespace, run_eval: EvalConfig | None) -> argparse.Namespace:
    """``args`` with each of :data:`RUN_SETTINGS` the command line left out taken from the run's ``eval:``
    section (a run's MODEL), else from the section's defaults."""
    source = run_eval or EvalConfig()
    return argparse.Namespace(**{**vars(args), **{key: getattr(source, key) for key in RUN_SETTINGS
                                                  if getattr(args, key) is None}})


def build_suites(args: argparse.Namespace, count_tokens) -> tuple[list, dict[str, heldout.Plan]]:
    """The suites ``args`` asks for, and the plan of each composite suite (``flan2022_heldout``: its
    components are among the suites, in the settings Flan reports, whatever ``--shots`` says)."""
    from flanforge.launcher.evaluation.suites import build_suite

    kinds = args.formats or (["few_shot"] if args.shots else ["zero_shot"])
    suites, plans = [], {}
    for spec in args.suites:
        if spec == heldout.NAME:
            plans[spec] = heldout.plan(args.data, args.cot_prompts)
            suites += [build_suite(s, split=args.split, max_examples=args.max_examples, count_tokens=count_tokens,
                                   encoding=args.encoding, on_bad_record=args.on_bad_record,
                                   cot_prompts=args.cot_prompts) for s in plans[spec].specs]
            continue
        own_format = spec.partition(":")[0] in benchmarks.SUITES  # BBH/GSM8K/MMLU prompts are their own
        for kind in kinds[:1] if own_format else kinds:
            suite = build_suite(spec, split=args.split, kind=kind, shots=args.shots, max_examples=args.max_examples,
                                count_tokens=count_tokens, encoding=args.encoding, on_bad_record=args.on_bad_record,
                                cot_prompts=args.cot_prompts)
            if len(kinds) > 1 and not own_format:
                suite.name = f"{suite.name}/{kind}"
            suites.append(suite)
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise UserError(f"--suites names a suite twice: {sorted({n for n in names if names.count(n) > 1})}")
    return suites, plans


class Loaded(NamedTuple):
    tokenizer: Any
    arch: str
    build: Callable[[], Any]
    """The model in eval mode, in fp32 on the CPU (the tokenizer comes first: bad suites fail before weights load)."""
    run_dir: RunDir | None
    """The training run of a checkpoint (its periodic evaluations are plotted), else None."""
    precision: str
    """The run's ``train.precision`` (``auto`` for a Hugging Face directory): evaluation computes in it."""
    eval: EvalConfig | None
    """The run's ``eval:`` section (None for a Hugging Face directory): settings the command line leaves out."""


def load_model(spec: str) -> Loaded:
    """What evaluation needs of a MODEL argument (see the module doc)."""
    from flanforge.model.config import ModelConfig
    from flanforge.launcher.export.run import checkpoint_model, load_run, resolve_tag
    from flanforge.model.load import build_model, load_configured_tokenizer

    if spec.startswith(UNTUNED):
        run_dir = RunDir(spec[len(UNTUNED):])
        if not run_dir.config.is_file():
            raise UserError(f"{spec}: {run_dir.root} is not a flanforge run directory (no {RunDir.CONFIG})")
        cfg, tokenizer = load_run(run_dir)
        model_cfg = dataclasses.replace(cfg.model, gradient_checkpointing=False)
        return Loaded(tokenizer, cfg.model.arch, lambda: build_model(model_cfg, tokenizer, cfg.seed, training=False).eval(),
                      None, cfg.train.precision, cfg.eval)
    path = Path(spec)
    if (path / "config.json").is_file():
        from transformers import AutoConfig

        arch = "t5" if AutoConfig.from_pretrained(path, local_files_only=True).is_encoder_decoder else "decoder"
        model_cfg = ModelConfig(arch=arch, path=str(path))
        tokenizer = load_configured_tokenizer(model_cfg)
        return Loaded(tokenizer, arch, lambda: build_model(model_cfg, tokenizer, 0, training=False).eval(), None, "auto",
                      None)
    root, tag = spec, None
    if not path.is_dir() and ":" in spec:
        root, tag = spec.rsplit(":", 1)
    if not Path(root).is_dir():
        raise UserError(f"MODEL {spec}: no such run or model directory")
    run_dir = RunDir(root)
    tag = resolve_tag(run_dir, tag)
    cfg, tokenizer = load_run(run_dir)
    return Loaded(tokenizer, cfg.model.arch, lambda: checkpoint_model(run_dir, tag)[0], run_dir, cfg.train.precision,
                  cfg.eval)
