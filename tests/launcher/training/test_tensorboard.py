"""TensorBoard helpers: MFU estimate and the console line."""

import pytest

from flanforge.launcher.training.tensorboard import format_line, model_flops_utilization


def test_mfu_uses_six_n_flops_per_token():
    # 1B parameters at 10k tokens/s on an A100 (312 TFLOP/s): 6e13 / 3.12e14
    assert model_flops_utilization(10_000, 10**9, "NVIDIA A100-SXM4-80GB") == pytest.approx(6e13 / 312e12)


def test_mfu_is_absent_on_cpu_and_unknown_gpus():
    assert model_flops_utilization(10_000, 10**9, "cpu") is None
    assert model_flops_utilization(10_000, 10**9, "Some Future GPU") is None


def test_format_line_shows_the_main_scalars():
    line = format_line(7, {"train/loss": 1.23456, "train/lr": 1e-3, "loss/task/x": 9.0})
    assert line == "step 7 | loss 1.235 | lr 0.001"
