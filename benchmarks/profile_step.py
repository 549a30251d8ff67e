"""Where a flanforge train step's time goes on CPU: a torch.profiler breakdown.

    python benchmarks/profile_step.py                      # ZeRO-2, 2 CPU ranks, DialogSum, micro-batch 8 x 512
    python benchmarks/profile_step.py --steps 3 --flanforge model.fused_loss=true

The same set-up as ``benchmarks/vs_hf_trainer.py`` (its data, tokenizer, model and
config). The ranks run flanforge's real ``train()`` loop: ``--warmup`` steps
unprofiled, then ``--steps`` under ``torch.profiler``. The phases are labelled
from outside the loop, by wrapping what the loop calls (nothing in flanforge
knows about the profiler): data wait (the DataLoader's ``__next__``), forward
(``engine.forward``; within it attention, i.e. every ``scaled_dot_product_attention``
call, and the LM head + loss), backward (``engine.backward``), optimizer
(``engine.step``: ZeRO's gradient reduction and AdamW), collectives
(``torch.distributed`` calls, wherever they happen, so they overlap the other
phases) and logging. Checkpoints are not written. ``--pythonpath`` profiles
another checkout (the code before a change, say) with the same data and
config. Rank 0's figures are printed as a table of seconds per step and share
of the profiled wall time; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("data_wait", "forward", "attention", "loss", "backward", "optimizer", "collectives", "logging")


def labelled(label: str, fn):
    import torch

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)

    return wrapper


def wrap(owner, names: tuple[str, ...], label: str) -> None:
    """Label ``owner.<name>`` for each of ``names`` it has (older flanforge versions lack some)."""
    for name in names:
        if hasattr(owner, name):
            setattr(owner, name, labelled(label, getattr(owner, name)))


def patch_phases(run) -> None:
    """Wrap what the loop calls in ``record_function`` labels."""
    import importlib

    import torch.distributed as dist
    import torch.nn.functional as F
    from flanforge.launcher.training import loop as train_mod

    wrap(run.engine, ("forward",), "forward")
    wrap(run.engine, ("backward",), "backward")
    wrap(run.engine, ("step",), "optimizer")
    wrap(F, ("scaled_dot_product_attention",), "attention")
    wrap(F, ("cross_entropy",), "loss")
    for module in ("flanforge.model.training_forward", "flanforge.model.loss"):  # after / before the rename
        try:
            wrap(importlib.import_module(module), ("fused_linear_cross_entropy",), "loss")
        except ImportError:
            pass
    wrap(dist, ("all_reduce", "all_gather_object", "all_gather", "all_gather_into_tensor", "broadcast",
                "reduce_scatter", "reduce_scatter_tensor", "barrier"), "collectives")
    wrap(train_mod, ("log_step",), "logging")
    if not hasattr(train_mod, "log_step"):  # before log_step existed, the loop logged inline
        wrap(type(run.data), ("counters",), "logging")
        wrap(run.metrics, ("scalars",), "logging")
        wrap(importlib.import_module("flanforge.launcher.training.loss").LossWindow, ("summary",), "logging")
    train_mod.save = lambda run: None
    loader_iter = type(iter(run.data.loader))
    wrap(loader_iter, ("__next__",), "data_wait")


def rank_main(args: argparse.Namespace) -> None:
    import torch
    from flanforge.launcher.training import loop as train_mod
    from flanforge.launcher.config import load_config

    cfg = load_config(args.config, args.flanforge)
    from flanforge.launcher.evaluation.periodic import PeriodicEval

    run = train_mod.setup(cfg, PeriodicEval)
    patch_phases(run)
    # One train() call (one DataLoader iterator): the profiler's schedule skips the
    # warm-up steps and records the next ones; guard_nonfinite (once a step, after its
    # optimizer step) marks step ends.
    schedule = torch.profiler.schedule(wait=args.warmup - 1, warmup=1, active=args.steps)
    ends: list[float] = []
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], schedule=schedule)
    guard = train_mod.guard_nonfinite

    def guard_and_step(*a, **kw):
        out = guard(*a, **kw)
        ends.append(time.perf_counter())
        prof.step()
        return out

    train_mod.guard_nonfinite = guard_and_step
    cfg.train.max_steps = args.warmup + args.steps
    with prof:
        train_mod.train(run)
    if run.layout.rank == 0:
        wall = ends[args.warmup + args.steps - 1] - ends[args.warmup - 1]
        averages = prof.key_averages()
        totals = {e.key: e.cpu_time_total / 1e6 for e in averages if e.key in PHASES}
        top = [(e.key, round(e.self_cpu_time_total / 1e6, 3)) for e in
               sorted(averages, key=lambda e: -e.self_cpu_time_total)[:15]]
        Path(args.out).write_text(json.dumps({"wall_s": wall, "steps": args.steps, "phases_s": totals,
                                              "top_ops_self_s": top}))
    torch.distributed.barrier()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3, help="steps run before the profiled ones (at least 1)")
    p.add_argument("--pythonpath", help="put this first on the ranks' PYTHONPATH (profile another flanforge checkout)")
    p.add_argument("--zero", type=int, default=2)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--workdir")
    p.add_argument("--port", type=int, default=29631)
    p.add_argument("--flanforge", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank:
        return rank_main(args)
    sys.path.insert(0, str(Path(__file__).parent))
    import vs_hf_trainer as vs

    work = Path(args.workdir or tempfile.mkdtemp(prefix="profile-step-"))
    work.mkdir(parents=True, exist_ok=True)
    args.data, args.steps_total = str(vs.DEFAULT_DATA), args.warmup + args.steps
    flan, _, _ = vs.prepare_data(args, work)
    config = vs.write_flanforge_config(args, work, flan, args.steps_total, "profile")
    shutil.rmtree(work / f"profile_z{args.zero}", ignore_errors=True)  # a fresh run, never a resumed one
    out = work / "profile.json"
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", str(args.port),
           "--no_local_rank", __file__, "--rank", "--config", str(config), "--out", str(out),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--flanforge", *args.flanforge]
    env = vs.rank_env()
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.pythonpath, env.get("PYTHONPATH")]))
    with (work / "profile.log").open("w") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"profiled run failed (exit {rc}); see {work / 'profile.log'}")
    result = json.loads(out.read_text())
    wall = result["wall_s"]
    print(f"{'phase':<12} {'s/step':>8} {'share':>6}")
    for phase in PHASES:
        seconds = result["phases_s"].get(phase, 0.0)
        print(f"{phase:<12} {seconds / args.steps:8.3f} {seconds / wall:6.1%}")
    print(f"{'wall':<12} {wall / args.steps:8.3f}")
    print(json.dumps({**result, "zero_stage": args.zero, "micro_batch": args.micro_batch, "max_len": args.max_len,
                      "flanforge_overrides": args.flanforge, "loadavg": os.getloadavg()[0]}))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
