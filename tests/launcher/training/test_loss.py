"""LossWindow on one process: the loss weights of the global-batch normalisation and the logged figures."""

import pytest
import torch

from flanforge.launcher.training.loss import LossKeys, LossWindow
from flanforge.constants import IGNORE_INDEX
from flanforge.mixtures.streaming.packing import PackedBatch

X = IGNORE_INDEX


def batch(labels, segments, meta):
    """A decoder micro-batch with the given (B, T) labels and segment ids; ``meta`` per row, per segment."""
    labels, seg = torch.tensor(labels), torch.tensor(segments)
    zeros = torch.zeros(len(labels), dtype=torch.long)
    tensors = {"input_ids": torch.ones_like(labels), "labels": labels, "segment_ids": seg,
               "position_ids": torch.zeros_like(labels)}
    return PackedBatch(tensors, meta, zeros, zeros, zeros, {})


def info(task, group="g", fmt="zs_noopt"):
    return {"task": task, "group": group, "format": fmt}


# Two micro-batches: 5 target tokens in 3 examples, then 3 target tokens in 1 example (and padding).
MICRO = [
    batch([[X, 7, 7, X, 7, 7], [X, X, 7, X, X, X]], [[1, 1, 1, 2, 2, 2], [1, 1, 1, 0, 0, 0]],
          [[info("a"), info("b", fmt="fs_noopt")], [info("a")]]),
    batch([[X, 7, 7, 7, X, X]], [[1, 1, 1, 1, 0, 0]], [[info("b", group="h", fmt="zs_cot")]]),
]


def test_global_token_weights_are_world_size_over_all_target_tokens():
    window = LossWindow(MICRO, "global_token", world_size=2)
    first = window.loss_inputs(MICRO[0])
    assert first["target_index"].tolist() == [1, 2, 4, 5, 8]  # flat positions of the labelled tokens
    assert torch.allclose(first["loss_weights"], torch.full((5,), 2 / 8))
    assert torch.allclose(window.loss_inputs(MICRO[1])["loss_weights"], torch.full((3,), 2 / 8))


def test_sequence_weights_give_every_example_one_share():
    window = LossWindow(MICRO, "sequence", world_size=1)
    weights = window.loss_inputs(MICRO[0])["loss_weights"]
    assert torch.allclose(weights, torch.tensor([1 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 4]))  # 4 examples: 1/4 each
    assert weights[:2].sum() == pytest.approx(0.25) and weights[2:4].sum() == pytest.approx(0.25)
    assert window.loss_inputs(MICRO[1])["loss_weights"].sum() == pytest.approx(0.25)


def test_summary_means_per_task_group_and_format_and_padding_efficiency():
    keys = LossKeys(top_tasks=["a", "b"], groups=["g", "h"])
    window = LossWindow(MICRO, "global_token", world_size=1)
    for b, value in zip(MICRO, (1.0, 4.0)):
        losses = torch.where(b.tensors["labels"] != X, value * torch.arange(1, 7).float(), 0.0)  # (B, T)
        window.record(losses, b, keys)
    out = window.summary(keys, {"extra": 3.0})
    # task a: positions 1, 2 of row 0 (1*2 + 1*3) and position 2 of row 1 (1*3): 8 / 3
    assert out["loss/task/a"] == pytest.approx(8 / 3)
    assert out["loss/task/b"] == pytest.approx((5 + 6 + 4 * (2 + 3 + 4)) / 5)
    assert out["loss/group/h"] == pytest.approx(4 * 9 / 3) and out["loss/format/cot"] == pytest.approx(12.0)
    assert out["train/loss"] == pytest.approx((2 + 3 + 5 + 6 + 3 + 36) / 8)
    assert out["train/padding_efficiency"] == pytest.approx(13 / 18)
    assert out["_tokens"] == 13 and out["_examples"] == 4 and out["extra"] == 3.0
