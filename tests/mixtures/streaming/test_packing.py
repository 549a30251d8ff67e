"""Packer: over-length policy, first-fit decreasing, row layout for the decoder and T5."""

import pytest
import torch

from flanforge.constants import IGNORE_INDEX
from flanforge.mixtures.streaming.packing import DROPPED, FITS, TRUNCATED, Packer, stack_rows

PAD, EOS = 0, 1


def packer(**kw):
    args = dict(arch="decoder", seq_len=16, target_len=8, overlong="truncate", include_inputs_in_loss=False, pad_id=PAD, eos_id=EOS)
    args.update(kw)
    return Packer(**args)


def test_decoder_row_segments_positions_and_loss_on_targets_only():
    p = packer(seq_len=12)
    a = p.fit([10, 11, 12], [20, 21])  # -> inputs 10 11 12, targets 20 21 EOS
    b = p.fit([13, 14], [22])  # -> inputs 13 14, targets 22 EOS
    assert a[2] == b[2] == FITS
    row = p.row([a[:2], b[:2]])
    assert row["input_ids"].tolist() == [10, 11, 12, 20, 21, EOS, 13, 14, 22, EOS, PAD, PAD]
    assert row["segment_ids"].tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0]
    assert row["position_ids"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 0]
    # labels[t] is the token at t+1 of the same example, only where that token is a target
    X = IGNORE_INDEX
    assert row["labels"].tolist() == [X, X, 20, 21, EOS, X, X, 22, EOS, X, X, X]


def test_include_inputs_in_loss_labels_every_next_token_of_the_example():
    p = packer(seq_len=8, include_inputs_in_loss=True)
    inp, tgt, _ = p.fit([10, 11, 12], [20])
    row = p.row([(inp, tgt)])
    X = IGNORE_INDEX
    assert row["labels"].tolist() == [11, 12, 20, EOS, X, X, X, X]


def test_truncate_cuts_inputs_from_the_left_and_keeps_targets():
    p = packer(seq_len=6)
    assert p.fit([1, 2, 3, 4, 5], [7, 8]) == ([3, 4, 5], [7, 8, EOS], TRUNCATED)


def test_truncate_cuts_targets_from_the_right_when_they_alone_do_not_fit():
    p = packer(seq_len=4)
    # one input token is kept so the first target token has a position to be predicted from
    assert p.fit([1, 2], [7, 8, 9, 10]) == ([2], [7, 8, 9], TRUNCATED)


def test_drop_policy_drops_overlong_and_keeps_fitting():
    p = packer(seq_len=6, overlong="drop")
    assert p.fit([1, 2, 3, 4, 5], [7])[2] == DROPPED
    assert p.fit([1, 2, 3, 4], [7]) == ([1, 2, 3, 4], [7, EOS], FITS)


def test_first_fit_decreasing_fills_rows_and_keeps_every_example_once():
    p = packer(seq_len=10)
    sizes = [(6,), (5,), (4,), (4,), (3,), (1,), (7,)]
    rows = p.pack(sizes)
    assert sorted(i for r in rows for i in r) == list(range(len(sizes)))
    assert all(sum(sizes[i][0] for i in r) <= 10 for r in rows)
    # FFD: 7+3, 6+4, 5+4+1 -> three full rows (a naive sequential packer needs five)
    assert len(rows) == 3
    assert rows == [[6, 4], [0, 2], [1, 3, 5]]


def test_pack_rejects_an_example_larger_than_a_row():
    with pytest.raises(ValueError, match="larger than a row"):
        packer(seq_len=4).pack([(5,)])


def test_t5_rows_pack_both_sides_with_shifted_decoder_inputs():
    p = packer(arch="t5", seq_len=8, target_len=6)
    a = p.fit([10, 11], [20, 21])  # enc 10 11 EOS | dec 20 21 EOS
    b = p.fit([12], [22])  # enc 12 EOS | dec 22 EOS
    rows = p.pack([p.sizes(*a[:2]), p.sizes(*b[:2])])
    assert rows == [[0, 1]]
    row = p.row([a[:2], b[:2]])
    assert row["input_ids"].tolist() == [10, 11, EOS, 12, EOS, PAD, PAD, PAD]
    assert row["segment_ids"].tolist() == [1, 1, 1, 2, 2, 0, 0, 0]
    assert row["position_ids"].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    assert row["decoder_input_ids"].tolist() == [PAD, 20, 21, PAD, 22, PAD]
    assert row["decoder_segment_ids"].tolist() == [1, 1, 1, 2, 2, 0]
    assert row["decoder_position_ids"].tolist() == [0, 1, 2, 0, 1, 0]
    assert row["labels"].tolist() == [20, 21, EOS, 22, EOS, IGNORE_INDEX]


def test_t5_packing_respects_the_decoder_capacity_too():
    p = packer(arch="t5", seq_len=16, target_len=4)
    rows = p.pack([(2, 3), (2, 3), (2, 1)])  # encoders fit together; decoders do not
    assert rows == [[0, 2], [1]]


def test_t5_truncation_and_drop_are_per_side():
    p = packer(arch="t5", seq_len=4, target_len=3)
    assert p.fit([1, 2, 3, 4, 5], [7, 8, 9]) == ([3, 4, 5, EOS], [7, 8, 9], TRUNCATED)
    assert packer(arch="t5", seq_len=4, target_len=3, overlong="drop").fit([1], [7, 8, 9])[2] == DROPPED


def test_t5_rejects_inputs_in_loss():
    with pytest.raises(ValueError, match="include_inputs_in_loss"):
        packer(arch="t5", include_inputs_in_loss=True)


def test_stack_rows_gives_batch_tensors():
    p = packer(seq_len=8)
    rows = [p.row([p.fit([5, 6], [7])[:2]]), p.row([p.fit([5], [7, 8])[:2]])]
    batch = stack_rows(rows)
    assert set(batch) == {"input_ids", "labels", "segment_ids", "position_ids"}
    assert all(v.shape == (2, 8) and v.dtype == torch.int64 for v in batch.values())
    assert batch["input_ids"][1].tolist() == [5, 7, 8, EOS, PAD, PAD, PAD, PAD]
