"""Per-segment attention: the examples' ranges read from packed segment ids, and what it refuses.
(Its outputs and gradients against the dense mask: tests/model/test_packed_isolation.py.)"""

import pytest
import torch

from flanforge.model import attention


def test_segment_ranges_from_packed_ids():
    seg = torch.tensor([[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]])
    assert attention.segment_ranges(seg) == [[(0, 3), (3, 5)], [(0, 7)], []]


def test_auto_trains_decoders_per_segment_on_cpu():
    assert attention.resolve("auto", "cpu") == "segments"
    assert attention.resolve("auto", "cpu", arch="t5") == "sdpa_mask"
    assert attention.resolve("auto", "cpu", training=False) == "sdpa_mask"  # evaluation: padded batches
    assert attention.resolve("auto", "cuda", dropout=0.1) == "segments"  # no flex with dropout


def test_segments_refuses_t5_naming_what_runs():
    with pytest.raises(attention.AttentionUnavailable, match="decoder-only.*; available: auto, sdpa_mask, eager_mask$"):
        attention.resolve("segments", "cpu", arch="t5")
