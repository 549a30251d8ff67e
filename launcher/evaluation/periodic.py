"""Evaluation between training steps (``eval.every_steps``), on every rank, with ``flanforge eval``'s code.

Every ``eval.every_steps`` steps the engine's model is switched to eval mode
(no dropout; dense attention masks where training used FlexAttention or per-segment attention) and
scored on ``eval.suites`` (default: the training mixture's validation split)
with at most ``eval.max_examples_per_task`` examples per task, data-parallel
over the ranks (under ZeRO-3 in lockstep: see ``launcher/evaluation/evaluator.py``). It
also computes the training loss on the same number of validation records per
task, rendered as training renders them (``val/loss``, and per sub-mixture
``val/loss/<name>``). Rank 0 writes to TensorBoard::

    eval/<suite>/<task>/<metric>    eval/<suite>/mean (the tasks' first metric)
    eval/<suite>/mean/<metric>      val/loss   val/loss/<sub-mixture>

and appends the step's results to ``<output_dir>/eval/history.jsonl`` (which
``flanforge eval`` of the run plots against the step).

It never reads the data stream, and runs under ``torch.random.fork_rng`` with
the Python and NumPy states restored: the training losses of a run are the
same with and without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from typing import Any

import numpy as np
import torch

from flanforge.files import atomic_write
from flanforge.launcher.evaluation import heldout
from flanforge.launcher.training.context import RunContext


@contextlib.contextmanager
def evaluation_mode(model: torch.nn.Module, device_type: str):
    """``model`` in eval mode with an attention that takes dense masks (:func:`scoring.dense_attention`),
    every RNG state put back afterwards."""
    from flanforge.launcher.evaluation.scoring import dense_attention
    from flanforge.model import attention

    training = model.training
    states = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        replaced = None
        try:
            model.eval()
            replaced = dense_attention(model, device_type)
            yield model
        finally:
            if replaced is not None:
                attention.use(model, replaced)
            model.train(training)
            random.setstate(states[0])
            np.random.set_state(states[1])


class PeriodicEval:
    """Builds the suites once (every rank alike) and runs them when a step is due. Collective.

    Registered with the checkpointer as ``evaluation``: its state is how many results the history
    held at the save, and a resumed run drops the ones after it (they came from steps that run again),
    as TensorBoard purges the steps logged after the checkpoint.
    """

    def __init__(self, run: RunContext, mixture, tokenizer):
        self.cfg, self.layout, self.history = run.cfg, run.layout, run.run_dir.eval_history
        self.mixture, self.tokenizer = mixture, tokenizer
        self.suites: list[Any] | None = None
        self.plans: dict[str, heldout.Plan] = {}  # a composite suite's (flan2022_heldout) components
        self.validation: dict[str, list[tuple[str, str]]] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"history_entries": len(self._history_lines())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        lines = self._history_lines()
        keep = state["history_entries"]
        if self.layout.is_main and len(lines) > keep:
            atomic_write(self.history, "".join(lines[:keep]))

    def _history_lines(self) -> list[str]:
        if not self.history.is_file():
            return []
        return self.history.read_text().splitlines(keepends=True)

    def due(self, step: int) -> bool:
        every = self.cfg.eval.every_steps
        return bool(every) and step % every == 0

    def _build(self) -> None:
        from flanforge.launcher.evaluation.suites import build_suite, validation_pairs

        count = lambda text: len(self.tokenizer.encode(text))  # noqa: E731
        per_task = self.cfg.eval.max_examples_per_task
        specs = []
        for spec in self.cfg.eval.suites or [self.cfg.mixture.name]:
            if spec == heldout.NAME:  # its components from eval.data, in Flan's settings (MMLU CoT needs prompts)
                self.plans[spec] = heldout.plan(self.cfg.eval.data, None)
                specs += self.plans[spec].specs
            else:
                specs.append(spec)
        self.suites = [build_suite(spec, max_examples=per_task, count_tokens=count,
                                   on_bad_record=self.cfg.mixture.on_bad_record)  # the run's policy
                       for spec in specs]
        self.validation = validation_pairs(self.mixture, per_task, count)

    def run(self, step: int, engine) -> dict[str, float] | None:
        """Evaluate the engine's model; returns the scalars to log on rank 0 (None elsewhere), after appending
        the results to the history."""
        from flanforge.launcher.evaluation.evaluator import Evaluator
        from flanforge.launcher.evaluation.scoring import Scorer, get_convention, max_length

        if self.suites is None:
            self._build()
        hf = engine.module.hf
        arch = self.cfg.model.arch

        def gather(obj):
            out = [None] * self.layout.world_size
            torch.distributed.all_gather_object(out, obj)
            return out

        zero3 = self.cfg.deepspeed.zero_stage == 3  # every forward gathers the weights: all ranks in step
        with evaluation_mode(hf, torch.device(engine.device).type):
            scorer = Scorer(hf, arch, self.tokenizer.pad_id, self.tokenizer.eos_id, engine.device,
                            convention=get_convention(self.cfg.eval.convention, arch), synced_gpus=zero3)
            evaluator = Evaluator(scorer, self.tokenizer, batch_size=self.cfg.eval.batch_size, rank=self.layout.rank,
                                  world_size=self.layout.world_size, gather=gather, max_length=max_length(hf, arch),
                                  lockstep=zero3)
            results = evaluator.run(self.suites)
            losses = evaluator.losses(self.validation)
        if results is None:
            return None
        from flanforge.launcher.evaluation.report import results_dict

        composites = {name: heldout.table(results, plan) for name, plan in self.plans.items()}
        values = scalars(results, losses, composites)
        entry = {"step": step, **results_dict(f"step {step}", "validation", results, scorer.convention.name,
                                              composites), "val_loss": losses}
        self.history.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())  # one write: a kill leaves the line whole or absent
        finally:
            os.close(fd)
        return values


def scalars(results, losses: dict[str, float], composites: dict[str, dict[str, Any]] | None = None) -> dict[str, float]:
    """TensorBoard scalars of one evaluation (see the module doc); a composite suite's (``heldout.table``)
    mean of its components as ``eval/<name>/mean``."""
    values: dict[str, float] = {}
    for suite in results:
        name = suite.suite.name
        firsts = []
        for task in suite.tasks:
            for metric, value in task.metrics.items():
                values[f"eval/{name}/{task.task.name}/{metric}"] = value
            firsts.append(next(iter(task.metrics.values())))
        for metric, value in suite.mean().items():
            values[f"eval/{name}/mean/{metric}"] = value
        if firsts:
            values[f"eval/{name}/mean"] = sum(firsts) / len(firsts)
    for name, composite in (composites or {}).items():
        if composite["mean"] is not None:
            values[f"eval/{name}/mean"] = composite["mean"]
    for group, loss in losses.items():
        values["val/loss" if group == "all" else f"val/loss/{group}"] = loss
    return values
