"""The run directory contract: which config keys may change when a run resumes (marked on the fields)."""

import pytest

from flanforge.config_fields import key_may_change
from flanforge.errors import UserError
from flanforge.launcher import rundir
from flanforge.launcher.config import Config, load_config, to_dict


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
    rundir.write_config(cfg)
    return cfg


def test_resume_reports_allowed_changes(tmp_path):
    _start(tmp_path)
    changes = rundir.check_run_dir(load_config(None, [f"output_dir={tmp_path}", "train.lr=0.01", "launch.nnodes=2"]))
    assert changes == {"launch.nnodes": (1, 2), "train.lr": (1e-3, 0.01)}


def test_resume_refuses_a_fixed_change_naming_the_key(tmp_path):
    _start(tmp_path)
    with pytest.raises(UserError, match=r"mixture.seq_len: 128 -> 64.*choose another output_dir"):
        rundir.check_run_dir(load_config(None, [f"output_dir={tmp_path}", "mixture.seq_len=64"]))


def test_a_fresh_directory_has_no_changes_but_checkpoints_without_config_are_refused(tmp_path):
    assert rundir.check_run_dir(load_config(None, [f"output_dir={tmp_path}"])) == {}
    (tmp_path / "checkpoints" / "step_00000001").mkdir(parents=True)
    with pytest.raises(UserError, match="holds checkpoints but no config.yaml"):
        rundir.check_run_dir(load_config(None, [f"output_dir={tmp_path}"]))
