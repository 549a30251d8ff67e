"""The DeepSpeed config generated from flanforge's typed config, and the engine built from it."""

from __future__ import annotations

from typing import Any

import torch

from flanforge.launcher.config import Config
from flanforge.model.load import full_shape


def lr_lambda(cfg: Config):
    """Multiplier of the peak LR at a given optimizer step: warmup, then constant/linear/cosine."""
    import math

    t = cfg.train

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "constant":
            return 1.0
        span = max(1, t.max_steps - t.warmup_steps)
        progress = min(1.0, (step - t.warmup_steps) / span)
        if t.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def training_precision(precision: str, device_type: str) -> str:
    """``train.precision`` on ``device_type``: ``auto`` is bf16 on a GPU that has it, else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def deepspeed_config(cfg: Config, world_size: int, load_universal: bool = False,
                     device_type: str = "cpu") -> dict[str, Any]:
    """DeepSpeed's JSON config for this run on ``device_type`` ranks (``deepspeed.extra`` is merged last)."""
    t, ds = cfg.train, cfg.deepspeed
    precision = training_precision(t.precision, device_type)
    pin = device_type == "cuda"
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": t.micro_batch_size * t.grad_accum * world_size,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "initial_scale_power": 16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
        # On CPU-only machines torch's AdamW serves offloaded optimizer states as well.
        "zero_force_ds_cpu_optimizer": False,
        "checkpoint": {"load_universal": load_universal},
    }
    if precision != "fp32":  # the dtype gradients are summed in, chosen rather than DeepSpeed's default
        out["data_types"] = {"grad_accum_dtype": ds.grad_dtype}
        out["communication_data_type"] = ds.grad_dtype
    return _merge(out, ds.extra)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def build_engine(model: torch.nn.Module, cfg: Config, world_size: int, load_universal: bool = False,
                 device_type: str = "cpu"):
    """Wrap ``model`` in a DeepSpeed engine with AdamW and the LR schedule."""
    import deepspeed

    t = cfg.train
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if len(full_shape(param)) < 2 or "norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.deepspeed.offload_optimizer and device_type == "cuda":
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # vectorised AdamW over CPU-resident states

        optimizer = DeepSpeedCPUAdam(groups, lr=t.lr, betas=t.betas, eps=1e-8, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=t.betas, eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world_size, load_universal, device_type),
    )
    return engine


def apply_resumable_keys(engine, cfg: Config) -> None:
    """After a checkpoint is loaded, let the config's resumable optimizer keys win over the saved ones.

    DeepSpeed restores the optimizer's param groups and the scheduler's base rates
    from the checkpoint, so a changed ``train.lr`` or ``train.weight_decay`` would be
    reported but not used. The schedule (``train.schedule``, ``warmup_steps``,
    ``max_steps``) is the config's already: LambdaLR does not save plain functions.
    The scheduler's step count (optimizer steps applied) carries on.
    """
    scheduler = engine.lr_scheduler
    factor = lr_lambda(cfg)
    groups = scheduler.optimizer.param_groups
    scheduler.base_lrs = [cfg.train.lr] * len(groups)
    scheduler.lr_lambdas = [factor] * len(groups)
    # Groups as build_engine made them: decayed weights first, then biases and norms.
    for group, decays in zip(groups, (True, False)):
        group["initial_lr"] = cfg.train.lr
        group["weight_decay"] = cfg.train.weight_decay if decays else 0.0
        group["lr"] = cfg.train.lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]
