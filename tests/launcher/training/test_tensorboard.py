"""TensorBoard helpers: the console line (MFU: test_flops.py)."""

from flanforge.launcher.training.tensorboard import format_line


def test_format_line_shows_the_main_scalars():
    line = format_line(7, {"train/loss": 1.23456, "train/lr": 1e-3, "loss/task/x": 9.0})
    assert line == "step 7 | loss 1.235 | lr 0.001"
