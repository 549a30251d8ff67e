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


def test_tree_mask_allows_ancestors_and_self_only():
    # Row 0: two branches under one root, listed out of depth order (children before a sibling's parent);
    # row 1: a chain, then two padding positions (-1, like roots: each sees itself only).
    parents = torch.tensor([[-1, 0, 0, 4, 1, 2], [-1, 0, 1, 2, -1, -1]])
    depths = torch.tensor([[0, 1, 1, 3, 2, 2], [0, 1, 2, 3, 0, 0]])
    mask = attention.tree_mask(parents, depths, dtype=torch.float32)
    assert mask.shape == (2, 1, 6, 6)

    def ancestors(row, i):
        out = {i}
        while row[i] >= 0:
            i = row[i]
            out.add(i)
        return out

    for b, row in enumerate(parents.tolist()):
        expected = torch.tensor([[j in ancestors(row, i) for j in range(6)] for i in range(6)])
        assert torch.equal(mask[b, 0] == 0, expected)
    assert (mask[mask != 0] == torch.finfo(torch.float32).min).all()
    assert mask[0, 0, 3].eq(0).nonzero().flatten().tolist() == [0, 1, 3, 4]  # 3 -> 4 -> 1 -> 0
