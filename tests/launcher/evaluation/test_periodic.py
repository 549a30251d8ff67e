"""The periodic evaluation's resume state: a resumed run drops the history written after its checkpoint
(those steps run again), so ``eval/history.jsonl`` holds each step once."""

import json

from flanforge.launcher.config import Config
from flanforge.launcher.evaluation.periodic import PeriodicEval
from flanforge.launcher.ranks.layout import RankLayout
from flanforge.launcher.training.context import RunContext
from flanforge.launcher.training.rundir import RunDir


def hook(tmp_path, rank=0):
    layout = RankLayout(rank=rank, world_size=2, local_rank=rank, local_world_size=2, node_rank=0,
                        master_addr="127.0.0.1", master_port=0, launcher="single")
    return PeriodicEval(RunContext(Config(output_dir=str(tmp_path)), RunDir(tmp_path), layout, None), None, None)


def write_history(tmp_path, steps):
    path = RunDir(tmp_path).eval_history
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in steps))
    return path


def test_resume_drops_the_history_after_the_checkpoint(tmp_path):
    write_history(tmp_path, [4, 8])
    saved = hook(tmp_path).state_dict()  # the checkpoint at step 10
    path = write_history(tmp_path, [4, 8, 12, 16])  # then the run went on and was killed at step 17
    assert saved == {"history_entries": 2}
    hook(tmp_path, rank=1).load_state_dict(saved)  # only rank 0 writes the file
    assert len(path.read_text().splitlines()) == 4
    hook(tmp_path).load_state_dict(saved)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [4, 8]


def test_a_run_without_history_saves_zero_entries(tmp_path):
    assert hook(tmp_path).state_dict() == {"history_entries": 0}
    hook(tmp_path).load_state_dict({"history_entries": 0})
    assert not RunDir(tmp_path).eval_history.exists()


def test_a_history_cut_short_by_a_kill_reads_its_whole_lines_and_a_bad_line_is_named(tmp_path):
    import pytest

    from flanforge.errors import UserError
    from flanforge.launcher.evaluation.report import read_history

    history = tmp_path / "history.jsonl"
    whole = [{"step": 2, "val_loss": {}}, {"step": 4, "val_loss": {}}, {"step": 2, "val_loss": {"a": 1.0}}]
    history.write_text("".join(json.dumps(e) + "\n" for e in whole) + '{"step": 6, "val_lo')
    assert read_history(history) == [whole[2], whole[1]]  # the last entry of each step, by step; the torn one left out
    history.write_text(json.dumps(whole[0]) + "\n" + "not json\n" + json.dumps(whole[1]) + "\n")
    with pytest.raises(UserError, match=rf"^{history}:2: not an evaluation entry"):
        read_history(history)
