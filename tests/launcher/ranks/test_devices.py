"""Which device a rank binds: its local rank over the GPUs it sees, under each launcher's environment
(env dicts and GPU counts only: the real binding on a GPU is benchmarks/gpu's), and a job that was given
GPUs never runs silently on the CPU."""

import pytest

from flanforge.errors import UserError
from flanforge.launcher.config import load_config
from flanforge.launcher.ranks import launch
from flanforge.launcher.ranks.devices import choose_device, device_kind, gpus_granted, visible_gpus
from flanforge.launcher.ranks.layout import read_rank_layout

DEEPSPEED = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_SIZE": "2", "CROSS_RANK": "1",
             "CROSS_SIZE": "2", "MASTER_ADDR": "n0", "MASTER_PORT": "29500", "CUDA_VISIBLE_DEVICES": "0,1"}
TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
            "MASTER_ADDR": "n0", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}
SRUN = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
        "SLURM_NTASKS_PER_NODE": "2", "SLURM_STEP_ID": "0", "SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "n[0-1]",
        "SLURM_STEP_GPUS": "0,1"}


@pytest.mark.parametrize("env, gpus_seen, expected", [
    (DEEPSPEED, 2, "cuda:1"),  # DeepSpeed's launcher: every rank of a node sees the node's GPUs
    (TORCHRUN, 2, "cuda:1"),
    (SRUN, 2, "cuda:1"),  # srun without per-task binding: the tasks share the node's GPUs
    ({**SRUN, "CUDA_VISIBLE_DEVICES": "1"}, 1, "cuda:0"),  # srun --gpus-per-task=1: the one it sees
    (TORCHRUN, 0, "cpu"),  # a CPU machine, nothing asked for
])
def test_each_launcher_binds_the_local_rank_over_the_visible_gpus(env, gpus_seen, expected):
    layout = read_rank_layout(env)
    kind = device_kind("auto", gpus_seen, {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"})
    assert choose_device(layout, kind, gpus_seen) == expected


def test_more_ranks_than_visible_gpus_is_an_error_naming_the_fix():
    with pytest.raises(UserError, match=r"local rank 1 of 2 on its node but sees 0 GPUs|sees 2 GPUs"):
        choose_device(read_rank_layout({**TORCHRUN, "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "3"}), "cuda", 2)


@pytest.mark.parametrize("env, why", [
    ({"CUDA_VISIBLE_DEVICES": "2,3"}, "CUDA_VISIBLE_DEVICES=2,3"),
    ({"SLURM_JOB_GPUS": "0"}, "SLURM_JOB_GPUS=0"),
    ({"SLURM_GPUS_ON_NODE": "4"}, "SLURM_GPUS_ON_NODE=4"),
])
def test_a_job_given_gpus_that_sees_none_is_an_error_not_a_cpu_run(env, why):
    with pytest.raises(UserError, match=f"asks for GPUs \\({why}\\) but torch sees none"):
        device_kind("auto", 0, env)


def test_what_is_not_a_gpu_request():
    assert visible_gpus({}) is None and visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == [] and gpus_granted({"CUDA_VISIBLE_DEVICES": "-1"}) is None
    assert gpus_granted({"SLURM_GPUS_ON_NODE": "0"}) is None
    assert device_kind("auto", 0, {"CUDA_VISIBLE_DEVICES": "0,1", "DS_ACCELERATOR": "cpu"}) == "cpu"
    assert device_kind("cpu", 4, {}) == "cpu"
    with pytest.raises(UserError, match=r"launch.device=cuda\) but torch sees none"):
        device_kind("cuda", 0, {})


def _gpu_machine(monkeypatch, count):
    monkeypatch.setattr(launch, "visible_cuda_count", lambda: count)


def test_the_users_visible_devices_reach_the_ranks(monkeypatch, tmp_path):
    """CUDA_VISIBLE_DEVICES=2,3 on a 4-GPU node: DeepSpeed's runner is told to use GPUs 2 and 3 (its
    --num_gpus would renumber the ranks onto 0 and 1)."""
    _gpu_machine(monkeypatch, 2)  # torch, under CUDA_VISIBLE_DEVICES=2,3, sees two
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    cfg = load_config(None, [])
    cmd = launch.launcher_command(cfg, "c.yaml", [], str(tmp_path), env)
    assert cmd[cmd.index("--include") + 1] == "localhost:2,3" and "--num_gpus" not in cmd
    one = launch.launcher_command(load_config(None, ["launch.nproc_per_node=1"]), "c.yaml", [], str(tmp_path), env)
    assert one[one.index("--include") + 1] == "localhost:2"
    ranks = launch.rank_env(cfg)
    assert ranks["FLANFORGE_DEVICE"] == "cuda" and "DS_ACCELERATOR" not in ranks
    with pytest.raises(UserError, match="names 2 GPUs: at most one rank per GPU"):
        launch.launcher_command(load_config(None, ["launch.nproc_per_node=3"]), "c.yaml", [], str(tmp_path), env)


def test_on_cpu_the_ranks_are_told_cpu(monkeypatch, tmp_path):
    _gpu_machine(monkeypatch, 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = load_config(None, [])
    cmd = launch.launcher_command(cfg, "c.yaml", [], str(tmp_path), {})
    assert cmd[cmd.index("--num_gpus") + 1] == "2"
    ranks = launch.rank_env(cfg)
    assert ranks["FLANFORGE_DEVICE"] == "cpu" and ranks["DS_ACCELERATOR"] == "cpu"
