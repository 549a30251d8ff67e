"""The test tiers: what counts as starting ranks, and that the fast tier refuses it in a test."""

import subprocess
import sys

import pytest

from .conftest import _NoLaunchPopen, starts_ranks


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--module", "flanforge.launcher.cli"],
    ["/usr/bin/srun", "-n", "2", "python", "x.py"],
    "sbatch --nodes=2 slurm/train.sbatch",
    ["bash", "-c", "slurm/cluster.sh start"],
    ["torchrun", "--nproc-per-node", "2", "x.py"],
])
def test_rank_launchers_are_recognised(argv):
    assert starts_ranks(argv)


@pytest.mark.parametrize("argv", [
    [sys.executable, "-c", "print(1)"],
    ["flanforge", "export", "run", "--out", "x"],
    ["bash", "-c", "echo deepspeed is a word here"],
    [sys.executable, "-c", "import deepspeed, torchrun"],
])
def test_other_commands_are_not(argv):
    assert not starts_ranks(argv)


def test_the_fast_tier_refuses_a_launch_and_names_the_marker(monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", _NoLaunchPopen)
    with pytest.raises(RuntimeError, match=r"mark it @pytest.mark.e2e"):
        subprocess.run(["srun", "-n", "2", "true"])
    assert subprocess.run([sys.executable, "-c", "print(7)"], capture_output=True, text=True).stdout == "7\n"
