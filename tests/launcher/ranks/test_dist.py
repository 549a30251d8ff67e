"""Rank layout from each launcher's environment (env dicts only, no processes)."""

from __future__ import annotations

import shutil
import socket

import pytest

from flanforge.launcher.ranks import slurm_nodes
from flanforge.launcher.ranks.layout import RankLayout, in_launched_rank, read_rank_layout
from flanforge.launcher.ranks.process_group import export_torch_env, free_port
from flanforge.launcher.ranks.slurm_nodes import expand_nodelist, first_host, parse_tasks_per_node, slurm_job_port

# What `deepspeed --num_nodes 2 --num_gpus 4 --no_ssh --node_rank 1` gives local rank 2
# (deepspeed/launcher/launch.py), inside a Slurm job whose SLURM_* vars it inherits.
DEEPSPEED_ENV = {
    "RANK": "6",
    "WORLD_SIZE": "8",
    "LOCAL_RANK": "2",
    "LOCAL_SIZE": "4",
    "CROSS_RANK": "1",
    "CROSS_SIZE": "2",
    "MASTER_ADDR": "node01",
    "MASTER_PORT": "12345",
    "SLURM_PROCID": "1",
    "SLURM_STEP_ID": "0",
    "SLURM_NTASKS": "2",
    "SLURM_NODEID": "1",
    "FLANFORGE_NODE_LAUNCHER": "1",
}

TORCHRUN_ENV = {
    "RANK": "5",
    "WORLD_SIZE": "6",
    "LOCAL_RANK": "2",
    "LOCAL_WORLD_SIZE": "3",
    "GROUP_RANK": "1",
    "GROUP_WORLD_SIZE": "2",
    "ROLE_RANK": "5",
    "TORCHELASTIC_RUN_ID": "none",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29400",
}

# What `srun --nodes 3 --ntasks 7` (tasks per node 3,2,2) gives the task with PROCID 4.
SRUN_ENV = {
    "SLURM_JOB_ID": "4242",
    "SLURM_PROCID": "4",
    "SLURM_STEP_ID": "0",
    "SLURM_NTASKS": "7",
    "SLURM_STEP_NUM_TASKS": "7",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_TASKS_PER_NODE": "3,2(x2)",
    "SLURM_STEP_TASKS_PER_NODE": "3,2(x2)",
    "SLURM_JOB_NODELIST": "gpu[007-009]",
    "SLURM_STEP_NODELIST": "gpu[007-009]",
}


@pytest.fixture
def no_scontrol(monkeypatch):
    """Force the built-in node-list parser even where Slurm is installed."""
    monkeypatch.setattr(slurm_nodes.shutil, "which", lambda name: None)


# --- each launcher -------------------------------------------------------------------


def test_deepspeed_layout_wins_over_inherited_slurm_vars():
    layout = read_rank_layout(DEEPSPEED_ENV)
    assert layout == RankLayout(
        rank=6,
        world_size=8,
        local_rank=2,
        local_world_size=4,
        node_rank=1,
        master_addr="node01",
        master_port=12345,
        launcher="deepspeed",
    )
    assert not layout.is_main
    assert in_launched_rank(DEEPSPEED_ENV)


def test_torchrun_layout():
    layout = read_rank_layout(TORCHRUN_ENV)
    assert (layout.rank, layout.world_size, layout.local_rank, layout.local_world_size) == (5, 6, 2, 3)
    assert (layout.node_rank, layout.master_addr, layout.master_port) == (1, "10.0.0.1", 29400)
    assert layout.launcher == "torchrun"
    assert in_launched_rank(TORCHRUN_ENV)


def test_bare_env_launch_assumes_one_node():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    layout = read_rank_layout(env)
    assert layout.launcher == "env"
    assert (layout.local_world_size, layout.node_rank) == (2, 0)
    assert (layout.master_addr, layout.master_port) == ("127.0.0.1", 29500)


def test_srun_layout_heterogeneous_tasks_per_node(no_scontrol):
    layout = read_rank_layout(SRUN_ENV)
    assert layout == RankLayout(
        rank=4,
        world_size=7,
        local_rank=1,
        local_world_size=2,
        node_rank=1,
        master_addr="gpu007",
        master_port=slurm_job_port(4242),
        launcher="srun",
    )
    assert in_launched_rank(SRUN_ENV)


def test_srun_ntasks_per_node_and_explicit_master():
    env = {
        "SLURM_PROCID": "3",
        "SLURM_STEP_ID": "2",
        "SLURM_NTASKS": "4",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_JOB_NODELIST": "n[1-2]",
        "MASTER_ADDR": "ib-n1",
        "MASTER_PORT": "23456",
    }
    layout = read_rank_layout(env)
    assert (layout.local_world_size, layout.node_rank) == (2, 1)
    assert (layout.master_addr, layout.master_port) == ("ib-n1", 23456)


def test_srun_uses_step_vars_over_job_vars(no_scontrol):
    # A 2-task step inside a 4-task allocation on two nodes.
    env = {
        "SLURM_JOB_ID": "7",
        "SLURM_PROCID": "1",
        "SLURM_STEP_ID": "3",
        "SLURM_NTASKS": "4",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "0",
        "SLURM_TASKS_PER_NODE": "2(x2)",
        "SLURM_STEP_TASKS_PER_NODE": "2",
        "SLURM_JOB_NODELIST": "a[1-2]",
        "SLURM_STEP_NODELIST": "a2",
    }
    layout = read_rank_layout(env)
    assert (layout.world_size, layout.local_world_size, layout.master_addr) == (2, 2, "a2")
    assert layout.master_port == 10007


def test_single_process_defaults():
    layout = read_rank_layout({})
    assert layout == RankLayout(0, 1, 0, 1, 0, "127.0.0.1", 29500, "single")
    assert layout.is_main
    assert not in_launched_rank({})


def test_batch_script_is_not_a_rank():
    # sbatch's batch shell has SLURM_PROCID=0 but no step id.
    env = {"SLURM_JOB_ID": "9", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_NODEID": "0"}
    assert not in_launched_rank(env)
    assert read_rank_layout(env).launcher == "single"


def test_per_node_launcher_step_is_not_a_rank():
    # slurm/train.sbatch: one task per node that starts the deepspeed launcher.
    env = dict(SRUN_ENV, FLANFORGE_NODE_LAUNCHER="1")
    assert not in_launched_rank(env)
    assert read_rank_layout(env).launcher == "single"


def test_export_torch_env_round_trips(no_scontrol):
    layout = read_rank_layout(SRUN_ENV)
    env: dict[str, str] = dict(SRUN_ENV)
    export_torch_env(layout, env)
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")} == {
        "RANK": "4",
        "WORLD_SIZE": "7",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "gpu007",
        "MASTER_PORT": str(slurm_job_port(4242)),
    }
    again = read_rank_layout(env)
    assert (again.rank, again.world_size, again.local_rank, again.local_world_size) == (4, 7, 1, 2)
    assert again.launcher == "srun"


# --- node lists and task counts ------------------------------------------------------


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("node01", ["node01"]),
        ("node[01-03,7]", ["node01", "node02", "node03", "node7"]),
        ("node[01-03,7],login", ["node01", "node02", "node03", "node7", "login"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("n[008-011]", ["n008", "n009", "n010", "n011"]),
        ("host-0[9-11]", ["host-09", "host-010", "host-011"]),
        ("a-[1-2],b", ["a-1", "a-2", "b"]),
        ("rack[1-2]-node[1-2]", ["rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2"]),
        ("gpu-a[1-2]-x", ["gpu-a1-x", "gpu-a2-x"]),
        (" n[1-2] , m3 ", ["n1", "n2", "m3"]),
    ],
)
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["node[01-03", "node]1", "n[3-1]", "n[1-10:2]", "n[a-b]", "", " , "])
def test_expand_nodelist_rejects(nodelist):
    with pytest.raises(ValueError):
        expand_nodelist(nodelist)


def test_first_host_builtin_parser(no_scontrol):
    assert first_host("node[01-03,7],login") == "node01"
    assert first_host("login,node[1-2]") == "login"


def test_first_host_agrees_with_scontrol():
    # Checked when the test runs, not at collection: in a fresh CI the Slurm e2e tests
    # (tests/e2e, collected first) install Slurm before this runs.
    if shutil.which("scontrol") is None:
        pytest.skip("scontrol is not installed")
    for nodelist in ("node[01-03,7],login", "n[008-011]", "a-[1-2],b", "rack[1-2]-node[1-2]"):
        assert first_host(nodelist) == expand_nodelist(nodelist)[0]


def test_first_host_empty():
    with pytest.raises(ValueError, match="empty"):
        first_host("  ")


@pytest.mark.parametrize(
    ("value", "counts"),
    [("4", [4]), ("2(x3)", [2, 2, 2]), ("2(x3),1", [2, 2, 2, 1]), ("3,2(x2)", [3, 2, 2])],
)
def test_parse_tasks_per_node(value, counts):
    assert parse_tasks_per_node(value) == counts


@pytest.mark.parametrize("value", ["", "2(3)", "x2", "2(x)", "-1"])
def test_parse_tasks_per_node_rejects(value):
    with pytest.raises(ValueError, match="tasks per node"):
        parse_tasks_per_node(value)


# --- inconsistent environments -------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, ["RANK=2", "WORLD_SIZE=2"]),
        ({"RANK": "0", "WORLD_SIZE": "0", "LOCAL_RANK": "0"}, ["WORLD_SIZE=0"]),
        ({"RANK": "-1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, ["RANK=-1"]),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, ["LOCAL_RANK=2", "LOCAL_WORLD_SIZE=2"]),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_SIZE": "4"}, ["LOCAL_SIZE=4", "WORLD_SIZE=2"]),
        ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, ["RANK='x'"]),
        ({"RANK": "0", "LOCAL_RANK": "0"}, ["WORLD_SIZE"]),
        ({"LOCAL_RANK": "0"}, ["RANK", "WORLD_SIZE"]),
        ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_PORT": "70000"}, ["MASTER_PORT=70000"]),
        (
            {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_SIZE": "2", "CROSS_RANK": "2", "CROSS_SIZE": "2"},
            ["CROSS_RANK=2", "CROSS_SIZE=2"],
        ),
        (
            {"SLURM_PROCID": "4", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4"},
            ["SLURM_PROCID=4", "SLURM_NTASKS=4"],
        ),
        (
            {"SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_NODEID": "2", "SLURM_TASKS_PER_NODE": "2(x2)"},
            ["SLURM_NODEID=2", "SLURM_TASKS_PER_NODE"],
        ),
        (
            {"SLURM_PROCID": "1", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "2", "SLURM_NTASKS_PER_NODE": "2"},
            ["SLURM_LOCALID=2", "SLURM_NTASKS_PER_NODE=2"],
        ),
        ({"SLURM_PROCID": "0", "SLURM_STEP_ID": "0"}, ["SLURM_NTASKS"]),
    ],
)
def test_inconsistent_env_names_the_variables(env, names):
    with pytest.raises(ValueError) as info:
        read_rank_layout(env)
    for name in names:
        assert name in str(info.value)


# --- ports ---------------------------------------------------------------------------


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", port))  # raises OSError when the port is taken
        assert sock.getsockname()[1] == port


def test_slurm_job_port_is_stable_and_below_ephemeral_range():
    assert slurm_job_port("4242") == slurm_job_port(4242) == 14242
    assert all(10000 <= slurm_job_port(j) < 30000 for j in (0, 1, 19999, 20000, 123456789))
