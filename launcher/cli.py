"""The ``flanforge`` command: one subcommand per module of ``launcher/commands/``.

Each subcommand module has ``add_arguments(parser)`` and ``run(args) -> int``. For every command,
an option given twice and an override key given twice are errors naming both (``flanforge/arguments.py``).
Expected user mistakes (:class:`UserError` and its kin) print one line and
exit 2, without a traceback (a full disk or a file-size limit too: the line names the
path); anything else is a bug: its traceback, one line, exit 1 (``launcher/ranks/report.py``;
in ranks, only the first failing rank reports). Ctrl-C or SIGTERM stop a command where it is,
its unfinished outputs removed on the way out: one line, exit 130 or 143 (128 + the signal).
The process ends in :func:`entry`: a rank of a launched job through the one exit
path of ranks (``launcher/ranks/rank_exit.py``), any other process through ``sys.exit``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from typing import Iterator, NoReturn

from flanforge.arguments import forbid_repeated_keys, forbid_repeats
from flanforge.errors import USER_ERRORS, Interrupted
from flanforge.launcher.ranks.layout import in_launched_rank
from flanforge.launcher.ranks.report import fail, interrupted

# name -> (module, help)
SUBCOMMANDS = {
    "train": ("flanforge.launcher.commands.train", "train on a mixture with DeepSpeed (starts the launcher itself)"),
    "inspect": ("flanforge.launcher.commands.inspect", "show a mixture's tasks, rates and rendered examples"),
    "prepare": ("flanforge.launcher.commands.prepare", "write a mixture's task records as webdataset shards"),
    "export": ("flanforge.launcher.commands.export", "consolidate a run's ZeRO shards into a Hugging Face model directory"),
    "plan": ("flanforge.launcher.commands.plan", "predict memory per rank for every ZeRO, offload, recompute and loss choice"),
    "eval": ("flanforge.launcher.commands.eval", "score a run, a checkpoint or a model directory on evaluation suites"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported for its arguments (the others
    import torch and friends, seconds each), the rest are listed by name and help."""
    parser = argparse.ArgumentParser(prog="flanforge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
            forbid_repeats(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(argv)
        forbid_repeated_keys(getattr(args, "overrides", None) or ())
    except USER_ERRORS as err:
        return fail(command, err, user_error=True)
    # a rank's signals are its launcher's business (launcher/ranks/launch.py)
    with contextlib.nullcontext() if in_launched_rank() else _sigterm_raises():
        try:
            return importlib.import_module(args._module).run(args) or 0
        except KeyboardInterrupt:
            return interrupted(args.command, signal.SIGINT)
        except Interrupted as stop:
            return interrupted(args.command, stop.signum)
        except USER_ERRORS as err:
            return fail(args.command, err, user_error=True)
        except Exception as err:  # a bug: its traceback, then one line (exit 1)
            return fail(args.command, err, user_error=False)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` in this process while the command runs, as Ctrl-C raises
    KeyboardInterrupt, so its writers remove what they had not finished; a process forked from it
    (a prepare worker) still ends as SIGTERM ends a process."""
    pid = os.getpid()

    def handler(signum: int, _frame) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signum, signal.SIG_IGN)  # once: the clean-up on the way out is not cut short again
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def entry(argv: list[str] | None = None) -> NoReturn:
    """The ``flanforge`` command as a process: run :func:`main`, then end (ranks of a launched
    job through :func:`~flanforge.launcher.ranks.rank_exit.end_rank`, whatever the outcome)."""
    code = main(argv)
    if in_launched_rank():
        from flanforge.launcher.ranks.rank_exit import end_rank

        end_rank(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
