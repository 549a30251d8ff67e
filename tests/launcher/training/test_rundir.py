"""The run directory: its paths, checkpoint tags (latest, pruning), and which config keys
may change when a run resumes (marked on the fields, listed in the README)."""

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from flanforge.config_fields import changes_allowed, key_may_change
from flanforge.errors import TaskError, UserError
from flanforge.launcher.training import rundir
from flanforge.launcher.training.checkpoint import prune
from flanforge.launcher.training.preflight import run_checks
from flanforge.launcher.config import Config, load_config, to_dict
from flanforge.launcher.training.rundir import RunDir

ROOT = Path(__file__).resolve().parents[3]
COMMON_SH = ROOT / "slurm" / "common.sh"


@pytest.mark.parametrize("key", [
    "train.lr", "train.max_steps", "train.micro_batch_size", "mixture.weights", "mixture.num_workers",
    "mixture.on_bad_record", "checkpoint.every_steps", "launch.nproc_per_node", "deepspeed.offload_optimizer",
    "output_dir",
])
def test_keys_marked_may_change(key):
    assert key_may_change(Config, key)


@pytest.mark.parametrize("key", [
    "seed", "model.arch", "model.hf_config.hidden_size", "mixture.seq_len", "mixture.block_size",
    "mixture.name", "train.grad_accum", "train.precision", "deepspeed.zero_stage", "deepspeed.extra.foo",
    "no_such_section.key",
])
def test_keys_that_must_stay(key):
    assert not key_may_change(Config, key)


def marked_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Keys marked ``may_change``: a marked section as ``section.*``."""
    out = set()
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if changes_allowed(f):
            out.add(prefix + f.name + (".*" if dataclasses.is_dataclass(tp) else ""))
        elif dataclasses.is_dataclass(tp):
            out |= marked_keys(tp, f"{prefix}{f.name}.")
    return out


def test_readme_lists_exactly_the_keys_marked_may_change():
    """The README's bullet list after "These keys may change": the keys before each bullet's colon."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("These keys may change"):].split("\n\n")[1]
    bullets = [" ".join(b.split()) for b in block.split("\n- ")]
    listed = {key for b in bullets for key in re.findall(r"`([\w.*]+)`", b.split(": ")[0])}
    assert listed == marked_keys()
    assert {"train.lr", "mixture.weights", "checkpoint.*", "output_dir"} <= listed  # the parse found the list


def test_a_changed_on_bad_record_is_used_by_the_resumed_run(tmp_path):
    """Pre-flight and the ranks load the mixture under the resumed config's policy."""
    task = ROOT / "tests" / "bad_inputs" / "tasks" / "row_object_field.yaml"  # record 2 is malformed
    first = _start(tmp_path, f"mixture.name={task}", "mixture.on_bad_record=skip")
    assert run_checks(first, RunDir.of(first)).tasks()[0].bad_records == 1
    resumed = load_config(None, [f"output_dir={tmp_path}", f"mixture.name={task}", "mixture.on_bad_record=error"])
    with pytest.raises(TaskError, match=r"object_field\.jsonl:2: field 'answer' is a JSON object"):
        run_checks(resumed, RunDir.of(resumed))


def test_config_changes_lists_leaves_that_differ():
    old = to_dict(load_config(None))
    new = to_dict(load_config(None, ["train.lr=0.5", "model.hf_config.hidden_size=64", "mixture.weights={a: 2}"]))
    assert rundir.config_changes(old, new) == {
        "mixture.weights": ({}, {"a": 2.0}),
        "model.hf_config.hidden_size": (None, 64),
        "train.lr": (1e-3, 0.5),
    }


def _start(tmp_path, *overrides):
    cfg = load_config(None, [f"output_dir={tmp_path}", *overrides])
    RunDir.of(cfg).write_config(cfg)
    return cfg


def check(cfg):
    return rundir.check_run_dir(cfg, RunDir.of(cfg))


def test_resume_reports_allowed_changes(tmp_path):
    _start(tmp_path)
    changes = check(load_config(None, [f"output_dir={tmp_path}", "train.lr=0.01", "launch.threads_per_rank=2"]))
    assert changes == {"launch.threads_per_rank": (1, 2), "train.lr": (1e-3, 0.01)}


def test_resume_refuses_a_fixed_change_naming_the_key(tmp_path):
    _start(tmp_path)
    with pytest.raises(UserError, match=r"mixture.seq_len: 128 -> 64.*choose another output_dir"):
        check(load_config(None, [f"output_dir={tmp_path}", "mixture.seq_len=64"]))


def test_a_fresh_directory_has_no_changes_but_checkpoints_without_config_are_refused(tmp_path):
    assert check(load_config(None, [f"output_dir={tmp_path}"])) == {}
    (tmp_path / "checkpoints" / "step_00000001").mkdir(parents=True)
    with pytest.raises(UserError, match="holds checkpoints but no config.yaml"):
        check(load_config(None, [f"output_dir={tmp_path}"]))


def _save(run_dir: RunDir, step: int, complete: bool = True) -> str:
    tag = RunDir.tag_for(step)
    run_dir.checkpoint(tag).mkdir(parents=True)
    if complete:
        run_dir.trainer_state(tag).write_text("{}")
    return tag


def test_paths_and_shards_dir_override(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    assert RunDir.of(cfg).shards == tmp_path / "shards" and RunDir.of(cfg).latest == tmp_path / "checkpoints" / "latest"
    cfg = load_config(None, [f"output_dir={tmp_path}", f"mixture.shards_dir={tmp_path / 'elsewhere'}"])
    assert RunDir.of(cfg).shards == tmp_path / "elsewhere"
    assert RunDir.tag_for(300) == "step_00000300"


def test_latest_names_a_complete_tag_or_is_an_error(tmp_path):
    run_dir = RunDir(tmp_path)
    assert run_dir.latest_tag() is None and run_dir.complete_tags() == []
    done, killed = _save(run_dir, 10), _save(run_dir, 20, complete=False)
    run_dir.latest.write_text(done + "\n")
    assert run_dir.latest_tag() == done
    assert run_dir.tags() == [done, killed] and run_dir.complete_tags() == [done]
    run_dir.latest.write_text(killed)
    with pytest.raises(UserError, match=f"names checkpoint '{killed}', but .* is missing or incomplete"):
        run_dir.latest_tag()


def test_prune_keeps_the_newest_and_drops_leftovers_newer_than_latest(tmp_path):
    run_dir = RunDir(tmp_path)
    tags = [_save(run_dir, step) for step in (5, 10, 15, 20)]
    leftover = _save(run_dir, 25, complete=False)  # a save killed mid-write
    prune(run_dir, keep=2, current=tags[2])
    assert run_dir.tags() == tags[1:3]
    assert leftover not in run_dir.tags() and tags[3] not in run_dir.tags()


def test_slurm_scripts_spell_the_run_paths_as_rundir_does():
    text = COMMON_SH.read_text()
    spelled = dict(re.findall(r"^FF_(CHECKPOINTS|LATEST|TRAINER_STATE|PREEMPTED|LOCK)=(\S+)$", text, re.M))
    assert spelled == {"CHECKPOINTS": RunDir.CHECKPOINTS, "LATEST": RunDir.LATEST,
                       "TRAINER_STATE": RunDir.TRAINER_STATE, "PREEMPTED": RunDir.PREEMPTED, "LOCK": RunDir.LOCK}
