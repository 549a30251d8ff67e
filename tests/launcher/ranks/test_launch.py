"""The DeepSpeed launcher command built from the config."""

import socket
from pathlib import Path

import pytest

from flanforge.errors import ConfigError, UserError
from flanforge.launcher.config import load_config
from flanforge.launcher.ranks.process_group import free_port
from flanforge.launcher.ranks.launch import RANK_MODULE, launcher_command, rank_env


def test_single_node_command_runs_the_rank_module(tmp_path):
    cfg = load_config(None, ["launch.nproc_per_node=2", "launch.master_port=29999"])
    cmd = launcher_command(cfg, "configs/demo.yaml", ["train.max_steps=5"], str(tmp_path))
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    assert cmd[cmd.index("--num_gpus") + 1] == "2" and cmd[cmd.index("--master_port") + 1] == "29999"
    tail = cmd[cmd.index("--module"):]
    assert tail == ["--module", RANK_MODULE, "train", "--config", str(Path("configs/demo.yaml").resolve()), "train.max_steps=5"]
    assert "--hostfile" not in cmd and not list(tmp_path.iterdir())


def test_multi_node_command_has_node_rank_and_a_hostfile_with_one_line_per_node(tmp_path):
    cfg = load_config(None, ["launch.nproc_per_node=4", "launch.nnodes=3", "launch.node_rank=2",
                             "launch.master_addr=10.0.0.1", "launch.master_port=29400"])
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


def _port_in(cmd: list[str]) -> int:
    return int(cmd[cmd.index("--master_port") + 1])


def test_default_port_is_a_free_one_per_launch_so_two_runs_on_one_host_do_not_collide(tmp_path):
    cfg = load_config(None, [])
    assert cfg.launch.master_port == 0
    port = _port_in(launcher_command(cfg, "c.yaml", [], str(tmp_path)))
    assert 0 < port <= 65535
    with socket.socket() as sock:  # the port the ranks are told can really be listened on
        sock.bind(("", port))
        sock.listen()
        other = _port_in(launcher_command(cfg, "c.yaml", [], str(tmp_path)))
    assert other != port


def test_a_configured_port_in_use_is_a_user_error_naming_the_key(tmp_path):
    with socket.socket() as sock:  # a live run's rendezvous server listens with SO_REUSEADDR
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        cfg = load_config(None, [f"launch.master_port={taken}"])
        with pytest.raises(UserError, match=rf"launch.master_port={taken} is in use on this host.*master_port=0"):
            launcher_command(cfg, "c.yaml", [], str(tmp_path))
    free = free_port()
    cmd = launcher_command(load_config(None, [f"launch.master_port={free}"]), "c.yaml", [], str(tmp_path))
    assert _port_in(cmd) == free


def test_a_port_a_finished_run_left_in_time_wait_may_be_reused(tmp_path):
    with socket.socket() as server:  # as torch's TCPStore listens (a run's rendezvous server)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the side that closes first keeps the port in TIME_WAIT
        client.close()
    cmd = launcher_command(load_config(None, [f"launch.master_port={port}"]), "c.yaml", [], str(tmp_path))
    assert _port_in(cmd) == port


def test_several_nodes_need_an_explicit_port():
    with pytest.raises(ConfigError, match=r"launch.master_port must be set \(not 0\) when launch.nnodes=2"):
        load_config(None, ["launch.nnodes=2"])
