"""The LR schedule and the generated DeepSpeed config (no engine is built: no process group needed)."""

import math

import pytest
import torch

from flanforge.launcher.config import load_config
from flanforge.launcher.training.engine import deepspeed_config, lr_lambda


def schedule(*overrides):
    return lr_lambda(load_config(None, ["train.max_steps=110", "train.warmup_steps=10", *overrides]))


def test_warmup_rises_linearly_to_the_peak():
    factor = schedule("train.schedule=cosine")
    assert [factor(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factor(10) == pytest.approx(1.0)


@pytest.mark.parametrize("kind,expected", [
    ("constant", lambda p: 1.0),
    ("linear", lambda p: 1.0 - p),
    ("cosine", lambda p: 0.5 * (1.0 + math.cos(math.pi * p))),
])
def test_after_warmup(kind, expected):
    factor = schedule(f"train.schedule={kind}")
    for step in (10, 35, 60, 85, 110, 150):  # the last one is past max_steps: it stays at the end value
        progress = min(1.0, (step - 10) / 100)
        assert factor(step) == pytest.approx(expected(progress), abs=1e-12), step


def test_the_schedule_drives_torch_lambda_lr_as_the_engine_uses_it():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule("train.schedule=linear"))
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.05) and lrs[9] == pytest.approx(0.5) and lrs[11] == pytest.approx(0.5 * 0.99)


def test_deepspeed_config_batch_sizes_and_extra_merged_last():
    cfg = load_config(None, ["train.micro_batch_size=3", "train.grad_accum=5", "deepspeed.zero_stage=3",
                             "deepspeed.extra={zero_optimization: {reduce_bucket_size: 1000}, bf16: {enabled: true}}"])
    ds = deepspeed_config(cfg, world_size=4, load_universal=True)
    assert ds["train_batch_size"] == 3 * 5 * 4 and ds["gradient_accumulation_steps"] == 5
    assert ds["zero_optimization"] == {"stage": 3, "reduce_bucket_size": 1000}
    assert ds["bf16"] == {"enabled": True} and ds["checkpoint"] == {"load_universal": True}


def test_precision_auto_is_fp32_on_cpus_and_half_runs_sum_gradients_in_fp32():
    from flanforge.launcher.training.engine import training_precision

    assert load_config(None, []).train.precision == "auto" and training_precision("auto", "cpu") == "fp32"
    assert training_precision("fp16", "cpu") == "fp16"
    fp32 = deepspeed_config(load_config(None, []), world_size=2)
    assert "data_types" not in fp32 and "communication_data_type" not in fp32 and not fp32["bf16"]["enabled"]
    bf16 = deepspeed_config(load_config(None, ["train.precision=bf16"]), world_size=2, device_type="cuda")
    assert bf16["bf16"]["enabled"] and bf16["data_types"] == {"grad_accum_dtype": "fp32"}
    assert bf16["communication_data_type"] == "fp32"
    chosen = deepspeed_config(load_config(None, ["train.precision=fp16", "deepspeed.grad_dtype=fp16",
                                                 "deepspeed.offload_optimizer=true"]), world_size=2, device_type="cuda")
    assert chosen["communication_data_type"] == "fp16" and chosen["fp16"]["enabled"]
    assert chosen["zero_optimization"]["offload_optimizer"]["pin_memory"] is True
