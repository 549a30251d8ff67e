"""``flanforge export RUN_DIR --out DIR``: a run's ZeRO shards as a Hugging Face model directory
(``export/run.py`` says what is written and how it is checked)."""

from __future__ import annotations

import argparse

from flanforge.arguments import writable_dir

DTYPE_CHOICES = ("bf16", "fp16", "fp32")  # export/shards.py: DTYPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a training run's output_dir (holds config.yaml and checkpoints/)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the Hugging Face model directory to write")
    parser.add_argument("--tag", help="checkpoint tag to export (e.g. step_00000300, or just 300); default: latest")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it exists and is not empty (its contents are deleted)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES,
                        help="the weights' dtype; default: the run's train.precision")
    parser.add_argument("--max-shard-size", metavar="SIZE",
                        help="largest safetensors file, e.g. 1GiB (a larger tensor gets a file of its own); default 5GB")


def run(args: argparse.Namespace) -> int:
    from flanforge.launcher.export.run import export_run
    from flanforge.launcher.training.rundir import RunDir

    writable_dir(args.out, "--out")
    sharding = {"max_shard_size": args.max_shard_size} if args.max_shard_size else {}
    out = export_run(RunDir(args.run_dir), args.out, tag=args.tag, overwrite=args.overwrite, dtype=args.dtype,
                     **sharding)
    print(out)
    return 0
