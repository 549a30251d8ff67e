"""The DeepSpeed launcher command built from the config."""

from pathlib import Path

from flanforge.launcher.config import load_config
from flanforge.launcher.launch import RANK_MODULE, launcher_command, rank_env


def test_single_node_command_runs_the_rank_module(tmp_path):
    cfg = load_config(None, ["launch.nproc_per_node=2", "launch.master_port=29999"])
    cmd = launcher_command(cfg, "configs/demo.yaml", ["train.max_steps=5"], str(tmp_path))
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    assert cmd[cmd.index("--num_gpus") + 1] == "2" and cmd[cmd.index("--master_port") + 1] == "29999"
    tail = cmd[cmd.index("--module"):]
    assert tail == ["--module", RANK_MODULE, "--config", str(Path("configs/demo.yaml").resolve()), "train.max_steps=5"]
    assert "--hostfile" not in cmd and not list(tmp_path.iterdir())


def test_multi_node_command_has_node_rank_and_a_hostfile_with_one_line_per_node(tmp_path):
    cfg = load_config(None, ["launch.nproc_per_node=4", "launch.nnodes=3", "launch.node_rank=2",
                             "launch.master_addr=10.0.0.1"])
    cmd = launcher_command(cfg, "c.yaml", [], str(tmp_path))
    assert cmd[cmd.index("--num_nodes") + 1] == "3" and cmd[cmd.index("--node_rank") + 1] == "2"
    assert "--no_ssh" in cmd and cmd[cmd.index("--master_addr") + 1] == "10.0.0.1"
    hostfile = Path(cmd[cmd.index("--hostfile") + 1])
    assert hostfile.parent == tmp_path
    assert hostfile.read_text().splitlines() == ["node0 slots=4", "node1 slots=4", "node2 slots=4"]
    assert cmd.index("--module") > cmd.index("--hostfile")


def test_rank_env_keeps_the_checkout_off_sys_path_and_pins_threads():
    cfg = load_config(None, ["launch.threads_per_rank=3"])
    env = rank_env(cfg)
    assert env["PYTHONSAFEPATH"] == "1"
    assert env["OMP_NUM_THREADS"] == "3" and env["DS_ACCELERATOR"] == "cpu"
