"""``flanforge export RUN_DIR --out DIR``: a run's ZeRO shards as a Hugging Face model directory
(``training/export.py`` says what is written and how it is checked)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a training run's output_dir (holds config.yaml and checkpoints/)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the Hugging Face model directory to write")
    parser.add_argument("--tag", help="checkpoint tag to export (e.g. step_00000300, or just 300); default: latest")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it exists and is not empty (its contents are deleted)")


def run(args: argparse.Namespace) -> int:
    from flanforge.launcher.training.export import export_run
    from flanforge.launcher.training.rundir import RunDir

    out = export_run(RunDir(args.run_dir), args.out, tag=args.tag, overwrite=args.overwrite)
    print(out)
    return 0
