"""A task with no usable train record inside a larger mixture, under ``mixture.on_bad_record: skip``, on 2 CPU
ranks: the run trains on the others, and the skip is counted in the log and in TensorBoard (issue 23)."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
DATA = Path(__file__).parents[1] / "bad_inputs" / "data"


def test_a_task_without_usable_records_is_skipped_and_counted(tmp_path, run_train, read_all_scalars):
    (tmp_path / "hollow.yaml").write_text(f"task: hollow\nsource: {{path: {DATA / 'all_bad.jsonl'}}}\n"
                                          "templates: [{id: t, input: '{{ question }}', target: '{{ answer }}'}]\n")
    (tmp_path / "mix.yaml").write_text("mixture: with_hollow\nmembers:\n  - task: hollow.yaml\n  - mixture: demo\n")
    out = tmp_path / "run"
    proc = run_train(out, f"mixture.name={tmp_path / 'mix.yaml'}", "mixture.on_bad_record=skip", "train.max_steps=1",
                     "checkpoint.every_steps=0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[flanforge] skipped 1 tasks with no usable train records: hollow" in proc.stdout
    assert read_all_scalars(out)["data/empty_tasks_skipped"] == [(0, 1.0)]
