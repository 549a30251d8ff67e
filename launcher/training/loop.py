"""A rank of ``flanforge train``: a fixed lifecycle (setup, train, cleanup) with an explicit loop.

Started outside a rank, ``flanforge train`` (``commands/train.py``) starts DeepSpeed's
own launcher (``deepspeed --num_gpus N``), which starts the ranks; each rank runs
``flanforge train`` again (``python -m flanforge.launcher.cli train``), which calls
:func:`train_rank` here. Started inside a rank (by ``deepspeed``, ``torchrun`` or ``srun``),
``flanforge train`` trains directly. Evaluation between steps is a hook the command passes in
(``evaluation/periodic.py``): the loop knows only ``due(step)`` and ``run(step, engine)``.
"""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from flanforge.errors import TrainingStopped
from flanforge.host_memory import release_freed_memory
from flanforge.launcher.config import Config
from flanforge.launcher.ranks import report
from flanforge.launcher.ranks.layout import RankLayout
from flanforge.launcher.ranks.process_group import start_rank
from flanforge.launcher.training import faults, runlock
from flanforge.launcher.training.context import RunContext
from flanforge.launcher.training.rundir import RunDir, check_run_dir
from flanforge.mixtures.streaming.packing import PackedBatch


# --------------------------------------------------------------------------- setup


@dataclass
class TrainState:
    """The trainer's resume state (registered with the checkpointer as ``trainer``)."""

    step: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    """Run-long counts, e.g. ``nonfinite_skipped``."""

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "counters": dict(self.counters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.counters = int(state["step"]), dict(state.get("counters", {}))


@dataclass
class Run:
    """Everything the loop needs, built once by :func:`setup`."""

    context: RunContext
    engine: Any
    data: Any  # flanforge.launcher.training.data.TrainData
    metrics: Any  # flanforge.launcher.training.tensorboard.Metrics
    checkpointer: Any  # flanforge.launcher.training.checkpoint.Checkpointer
    state: TrainState
    evaluation: Any  # the periodic evaluation hook: due(step), run(step, engine) -> scalars on rank 0
    n_params: int = 0
    flops: Any = None  # flanforge.launcher.training.flops.FlopModel
    device_name: str = "cpu"
    stop_signal: int | None = None

    @property
    def cfg(self) -> Config:
        return self.context.cfg

    @property
    def layout(self) -> RankLayout:
        return self.context.layout

    @property
    def run_dir(self) -> RunDir:
        return self.context.run_dir

    @property
    def step(self) -> int:
        return self.state.step

    @step.setter
    def step(self, value: int) -> None:
        self.state.step = value

    @property
    def counters(self) -> dict[str, float]:
        return self.state.counters


def setup(cfg: Config, make_evaluation: Callable[..., Any]) -> Run:
    """Build everything the loop needs, each component once; ``make_evaluation(context, mixture, tokenizer)``
    builds the periodic evaluation hook. Every component with resume state registers with the
    checkpointer here, once."""
    from flanforge.launcher.training.checkpoint import Checkpointer, EngineFiles, RngStates
    from flanforge.launcher.training.data import TrainData, prepare_tokenizer
    from flanforge.launcher.training.engine import apply_resumable_keys, build_engine, deepspeed_config, training_precision
    from flanforge.launcher.training.flops import FlopModel
    from flanforge.launcher.training.tensorboard import Metrics
    from flanforge.launcher.training.preflight import usable
    from flanforge.mixtures.registry import load_mixture
    from flanforge.model.load import build_model, count_parameters, training_device_type
    from flanforge.model.training_forward import TrainingModel, use_fused_loss

    layout, device = start_rank(cfg.launch.device)
    run_dir = RunDir.of(cfg)  # this rank's one RunDir
    runlock.acquire_for_rank(run_dir, layout.rank)
    report.share_errors(launch_error_file(run_dir, layout))
    faults.inject_error(layout.rank)
    changes = check_run_dir(cfg, run_dir)
    torch.distributed.barrier()  # every rank has read the old config.yaml before rank 0 replaces it
    if layout.is_main:
        run_dir.write_config(cfg)
    torch.distributed.barrier()
    context = RunContext(cfg, run_dir, layout, resume_tag=run_dir.latest_tag(), device=device,
                         precision=training_precision(cfg.train.precision, device.type))

    mixture, empty = usable(load_mixture(cfg.mixture.name, cfg.mixture.on_bad_record, cfg.mixture.data_dir))
    tokenizer = prepare_tokenizer(context, mixture)
    ds_config = deepspeed_config(cfg, layout.world_size, device_type=device.type)
    model = build_model(cfg.model, tokenizer, cfg.seed, zero3=ds_config if cfg.deepspeed.zero_stage == 3 else None)
    release_freed_memory()  # the build's freed fp32 copies: heap pages back to the OS
    n_params = count_parameters(model)
    flops = FlopModel.of(model)
    fused = use_fused_loss(cfg.model.fused_loss, training_device_type())
    wrapped = TrainingModel(model, arch=cfg.model.arch, fused=fused, zero_stage=cfg.deepspeed.zero_stage)
    data = TrainData(context, mixture, tokenizer)
    state = TrainState()
    evaluation = make_evaluation(context, mixture, tokenizer)
    checkpointer = Checkpointer(run_dir, layout, cfg.checkpoint.keep_last)
    checkpointer.register("trainer", state)
    checkpointer.register("data", data)
    checkpointer.register("evaluation", evaluation)
    engine = build_engine(wrapped, cfg, layout.world_size, load_universal=checkpointer.needs_universal(context.resume_tag),
                          device_type=device.type)
    release_freed_memory()  # what DeepSpeed freed while partitioning into its flat buffers
    checkpointer.register("engine", EngineFiles(engine), scope="files")
    checkpointer.register("rng", RngStates(), scope="rank")
    resumed = checkpointer.load(context.resume_tag)
    if resumed:
        apply_resumable_keys(engine, cfg)  # a changed train.lr, schedule, ... is used from the first step
    # Steps logged after the checkpoint by a run that was killed are purged from TensorBoard.
    metrics = Metrics(run_dir.tensorboard, enabled=layout.is_main, purge_step=state.step + 1)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    run = Run(context, engine, data, metrics, checkpointer, state, evaluation, n_params=n_params, flops=flops,
              device_name=device_name)
    if resumed:
        log(run, f"resumed from step {run.step}, attention {wrapped.attention}" + (f"; changed: {changes}" if changes else ""))
    else:
        log(run, f"model: {n_params / 1e6:.2f}M parameters, attention {wrapped.attention}, "
                 f"{ {True: 'fused', False: 'plain', None: 'auto (fused for large logits)'}[fused]} loss; "
                 f"mixture '{mixture.name}' "
                 f"with {len(mixture.tasks())} tasks; world size {layout.world_size}")
        metrics.text("config", run_dir.config.read_text())
        metrics.text("examples", data.sample_prompts())
    if empty:  # on_bad_record: skip left these tasks without a usable train record
        log(run, f"skipped {len(empty)} tasks with no usable train records: {', '.join(empty)}")
        metrics.scalars(state.step, {"data/empty_tasks_skipped": len(empty)})
        metrics.text("empty_tasks_skipped", "\n".join(empty), state.step)
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: setattr(run, "stop_signal", signum))
    return run


def launch_error_file(run_dir: RunDir, layout: RankLayout) -> Path:
    """This launch's error file in the run directory, named alike on every node (``launcher/ranks/report.py``):
    rank 0, holding the run's lock, clears earlier launches' files and names this one."""
    name = [uuid.uuid4().hex if layout.is_main else None]
    if layout.is_main:
        shutil.rmtree(run_dir.errors, ignore_errors=True)
    torch.distributed.broadcast_object_list(name, src=0)
    return run_dir.errors / name[0]


def log(run: Run, message: str) -> None:
    if run.layout.is_main:
        print(f"[flanforge] {message}", flush=True)


# --------------------------------------------------------------------------- train


def train(run: Run) -> None:
    """The loop: fetch a window of micro-batches, normalise, forward/backward each, step, log, save."""
    from flanforge.launcher.training.loss import LossKeys, LossWindow

    cfg, engine = run.cfg, run.engine
    batches: Iterator[PackedBatch] = run.data.batches()
    keys = LossKeys(run.data.top_tasks, run.data.mixture.group_of().values())
    save_every = cfg.checkpoint.every_steps
    inject = faults.nonfinite_steps()
    nonfinite_in_a_row = 0
    while run.step < cfg.train.max_steps:
        t0 = time.perf_counter()
        lr = engine.get_lr()[0]  # the rate this step uses
        micro = [next(batches) for _ in range(cfg.train.grad_accum)]
        t_data = time.perf_counter() - t0
        logging = (run.step + 1) % cfg.train.log_every == 0 or run.step + 1 == cfg.train.max_steps

        # The normaliser counts every target token (or example) of the whole
        # global batch, so gradients do not depend on how the batch is split.
        window = LossWindow(micro, cfg.train.loss_normalization, run.layout.world_size, engine.device)
        nonfinite = torch.zeros((), dtype=torch.bool, device=engine.device)
        for batch in micro:
            loss, token_losses = engine(model_inputs(batch, window, engine.device))
            if run.step + 1 in inject:
                loss = loss * float("nan")
            nonfinite |= ~torch.isfinite(loss.detach())  # stays on the device until the step's flags are reduced
            engine.backward(loss, scale_wrt_gas=False)
            # DeepSpeed wants step() after every micro-batch's backward: it counts micro-steps
            # there (backward uses the count to find the accumulation boundary, where ZeRO
            # reduces the gradients) and runs the optimizer and LR schedule only at the boundary.
            engine.step()
            if logging:
                window.record(token_losses, batch, keys)
            run.data.tracker.update(batch)
        run.step += 1
        nonfinite_any, stop = step_flags(run, nonfinite)
        nonfinite_in_a_row = guard_nonfinite(run, nonfinite_any, nonfinite_in_a_row)

        step_time = time.perf_counter() - t0
        if logging:
            log_step(run, window, keys, lr, step_time, t_data, micro)
        if run.evaluation.due(run.step):
            scores = run.evaluation.run(run.step, engine)
            if scores is not None:
                run.metrics.scalars(run.step, scores)
                run.metrics.flush()
                log(run, f"step {run.step} eval: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in scores.items() if k.endswith("/mean") or k == "val/loss"))

        due = stop or run.step == cfg.train.max_steps or (save_every and run.step % save_every == 0)
        if due and not nonfinite_in_a_row:  # never checkpoint right after a skipped step
            save(run)
        if stop:
            log(run, f"stopping at step {run.step} on signal {signal.Signals(run.stop_signal or signal.SIGTERM).name}")
            if run.layout.is_main:
                run.run_dir.preempted.write_text(f"{run.step}\n")
            return
    if run.layout.is_main:
        run.run_dir.preempted.unlink(missing_ok=True)


def log_step(run: Run, window: Any, keys: Any, lr: float, step_time: float, t_data: float,
             micro: list[PackedBatch]) -> None:
    """TensorBoard scalars and the log line of a logged step (collective: one all-reduce). MFU counts this
    rank's micro-batches (``launcher/training/flops.py``)."""
    from flanforge.constants import IGNORE_INDEX
    from flanforge.launcher.training.data import STREAM_COUNTERS
    from flanforge.launcher.training.flops import StepLengths, model_flops_utilization, peak_flops
    from flanforge.launcher.training.tensorboard import format_line

    values = window.summary(keys, run.data.local_counters())
    values.update({
        "train/lr": lr,
        "train/grad_norm": float(run.engine.get_global_grad_norm() or 0.0),
        "train/tokens_per_sec": values.pop("_tokens") / step_time,
        "train/examples_per_sec": values.pop("_examples") / step_time,
        "train/data_wait_fraction": t_data / step_time,
        "train/nonfinite_skipped": run.counters.get("nonfinite_skipped", 0),
    })
    local = {k: values.pop(k) for k in STREAM_COUNTERS.values()}
    values.update({f"data/{k}": v for k, v in run.data.run_counters(local).items()})
    if peak_flops(run.device_name, run.context.precision) is not None:  # a known GPU
        values["train/mfu"] = model_flops_utilization(run.flops.step_flops(StepLengths.of(micro, IGNORE_INDEX)),
                                                      step_time, run.device_name, run.context.precision)
    run.metrics.scalars(run.step, values)
    log(run, format_line(run.step, values))


def step_flags(run: Run, nonfinite: torch.Tensor) -> tuple[bool, bool]:
    """(a rank's loss was non-finite, a rank received SIGUSR1/SIGTERM): the step's one all-reduce of flags."""
    flags = torch.stack([nonfinite.float(), torch.tensor(1.0 if run.stop_signal else 0.0, device=nonfinite.device)])
    torch.distributed.all_reduce(flags)
    nonfinite_any, stop = (v > 0 for v in flags.tolist())
    if stop and run.stop_signal is None:
        run.stop_signal = signal.SIGTERM
    return nonfinite_any, stop


def guard_nonfinite(run: Run, nonfinite: bool, in_a_row: int) -> int:
    """Count a step whose loss was non-finite on any rank; its update must have been skipped.

    DeepSpeed skips the optimizer step itself when the gradients are not finite
    (its overflow check, via the gradient norm, in ZeRO-1/2/3; the LR schedule
    does not advance either); this checks that it did, counts it, and stops the run
    after ``train.max_nonfinite_in_a_row`` such steps in a row, keeping the last
    good checkpoint (no checkpoint is written after a non-finite step).
    """
    if not nonfinite:
        return 0
    if run.engine.was_step_applied():
        raise TrainingStopped(
            f"step {run.step}: non-finite loss and DeepSpeed applied the update anyway "
            f"(no overflow check for this ZeRO stage/precision); restart from the last checkpoint"
        )
    run.counters["nonfinite_skipped"] = run.counters.get("nonfinite_skipped", 0) + 1
    log(run, f"step {run.step}: non-finite loss, update skipped ({in_a_row + 1} in a row)")
    if in_a_row + 1 >= run.cfg.train.max_nonfinite_in_a_row:
        raise TrainingStopped(
            f"stopping: {in_a_row + 1} steps in a row with a non-finite loss (train.max_nonfinite_in_a_row="
            f"{run.cfg.train.max_nonfinite_in_a_row}); the last good checkpoint is kept in {run.run_dir.checkpoints}"
        )
    return in_a_row + 1


def save(run: Run) -> None:
    tag = run.checkpointer.save(run.step, run.cfg)
    log(run, f"saved checkpoint {tag}")


def model_inputs(batch: PackedBatch, window: Any, device: torch.device) -> dict[str, Any]:
    """The forward's inputs (the batch's tensors only: its meta and counters stay here) on the device,
    the target tokens' loss weights, and each row's example ranges, the last two computed from the
    host-side batch (no device sync)."""
    from flanforge.model.attention import segment_ranges

    return {**to_device(batch.tensors, device), **window.loss_inputs(batch),
            "segments": segment_ranges(batch.tensors["segment_ids"])}


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


# --------------------------------------------------------------------------- cleanup


def cleanup(run: Run) -> None:
    """Close what the run opened (TensorBoard's writer, the data loader's workers), on success and
    failure alike. No collective: the process group is the rank's exit path's to end
    (``launcher/ranks/rank_exit.py``: a barrier only when every rank succeeded)."""
    run.metrics.close()
    run.data.close()


def train_rank(cfg: Config, make_evaluation: Callable[..., Any]) -> int:
    run = setup(cfg, make_evaluation)
    try:
        train(run)
    finally:
        cleanup(run)
    return 0
