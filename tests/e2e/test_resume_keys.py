"""Keys the README lets change on resume take effect from the first resumed step: one run of 4
steps, its directory and shards moved, then ONE resumed run that changes every key below at once;
each key has an effect the others do not touch, asserted separately.

The engine's keys (``train.lr`` ... ``deepspeed.offload_*``, ``train.micro_batch_size``) are checked
on a real engine by ``resume_probe.py`` (``test_bad_input_ranks.py``); the stream's side of
``mixture.weights``, ``mixture.num_workers`` and ``train.micro_batch_size`` in ``tests/mixtures/streaming/test_stream.py``.
"""

import json
import shutil

import pytest

pytestmark = pytest.mark.e2e
SMALL_BLOCKS = "mixture.block_size=8"  # a few rows per block: new weights reach the stream within a step or two
WORDS = {"demo_reverse_words", "demo_change_case", "demo_sentiment"}  # sub-mixture demo_words' tasks


def test_changed_keys_take_effect_from_the_first_resumed_step(tmp_path, run_train, read_all_scalars, monkeypatch):
    first_dir, first_shards = tmp_path / "first", tmp_path / "shards_first"
    first = run_train(first_dir, "train.max_steps=4", "checkpoint.every_steps=4", SMALL_BLOCKS,
                      "train.max_nonfinite_in_a_row=1", f"mixture.shards_dir={first_shards}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    horizon = json.loads((first_dir / "checkpoints" / "step_00000004" / "trainer.json").read_text())
    horizon = horizon["data"]["stream"]["horizon"]
    out, shards = tmp_path / "moved", tmp_path / "shards_moved"
    shutil.move(first_dir, out)
    shutil.move(first_shards, shards)

    monkeypatch.setenv("FLANFORGE_INJECT_NONFINITE", "7,8")  # two in a row: the first run's limit was 1
    proc = run_train(out, "train.max_steps=10", SMALL_BLOCKS, f"mixture.shards_dir={shards}",
                     "mixture.weights={demo_numbers: 0}", "mixture.num_workers=1", "train.micro_batch_size=2",
                     "train.log_every=2", "train.log_top_tasks=1", "train.max_nonfinite_in_a_row=3",
                     "checkpoint.every_steps=3", "checkpoint.keep_last=1",
                     "eval.every_steps=4", "eval.max_examples_per_task=2", "eval.batch_size=2",
                     "model.attention=eager_mask")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # model.attention: the first run's decoder on CPU used per-example attention ("auto": segments)
    assert "resumed from step 4, attention eager_mask; changed:" in proc.stdout
    scalars = read_all_scalars(out)

    # output_dir and mixture.shards_dir: the moved directories are the ones read and written
    assert not first_dir.exists() and not first_shards.exists() and not (out / "shards").exists()
    # train.log_every: every second step (and the last) after the resume; the moved events kept
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 6, 8, 10]
    # train.max_nonfinite_in_a_row: two skipped steps in a row no longer stop the run
    assert "step 8: non-finite loss, update skipped (2 in a row)" in proc.stdout
    assert dict(scalars["train/nonfinite_skipped"])[10] == 2
    # train.log_top_tasks: six tasks logged before the resume, one after it
    logged = {tag: {s for s, _ in points} for tag, points in scalars.items() if tag.startswith("loss/task/")}
    assert len([t for t, steps in logged.items() if steps & {1, 2, 3, 4}]) == 6
    assert len([t for t, steps in logged.items() if steps & {6, 8, 10}]) == 1
    # mixture.weights: the stream's rates change at the first block the first run had not started ...
    state = json.loads((out / "checkpoints" / "step_00000010" / "trainer.json").read_text())["data"]["stream"]
    start, rates = state["segments"][-1]
    assert start == horizon and {t for t, p in rates.items() if p > 0} == WORDS
    # ... so demo_numbers' examples stop once the first run's partly read blocks are done
    assert {s for s, _ in scalars["loss/group/demo_numbers"]} & {8, 10} == set()
    assert {8, 10} <= {s for s, _ in scalars["loss/group/demo_words"]}
    # checkpoint.every_steps and checkpoint.keep_last
    assert [line.split()[-1] for line in proc.stdout.splitlines() if "saved checkpoint" in line] == [
        "step_00000006", "step_00000009", "step_00000010"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir()) == ["step_00000010"]
    # eval.every_steps and eval.max_examples_per_task (eval.batch_size changes no result, only the batching)
    history = [json.loads(line) for line in (out / "eval" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [8] and [s for s, _ in scalars["val/loss"]] == [8]
    assert {t["n"] for t in history[0]["suites"]["demo"]["tasks"].values()} == {2}
