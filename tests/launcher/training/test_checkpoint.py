"""The checkpointer saves and restores what was registered with it, and only that: components of each
scope, one registered by this test alone included, on a one-rank gloo group in this process (the real
engine's round trips are in tests/e2e)."""

import json
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist

from flanforge.launcher.config import Config
from flanforge.launcher.ranks.layout import RankLayout
from flanforge.launcher.ranks.process_group import free_port
from flanforge.launcher.training.checkpoint import Checkpointer, RngStates
from flanforge.launcher.training.rundir import RunDir


@pytest.fixture
def one_rank():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield RankLayout(rank=0, world_size=1, local_rank=0, local_world_size=1, node_rank=0,
                     master_addr="127.0.0.1", master_port=0, launcher="single")
    dist.destroy_process_group()


class Counter:
    """A component only this test knows."""

    def __init__(self, n=0):
        self.n = n

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


class FakeEngineFiles:
    """A ``files`` component: writes and reads its own file in the tag's directory."""

    def __init__(self, weights):
        self.weights = weights

    def save(self, run_dir, tag, step):
        run_dir.checkpoint(tag).mkdir(parents=True, exist_ok=True)
        torch.save(self.weights, run_dir.checkpoint(tag) / "weights.pt")

    def load(self, run_dir, tag, universal):
        self.weights = torch.load(run_dir.checkpoint(tag) / "weights.pt")


def checkpointer(run_dir, layout, counter, engine):
    ckpt = Checkpointer(run_dir, layout, keep_last=2)
    ckpt.register("counter", counter)
    ckpt.register("engine", engine, scope="files")
    ckpt.register("rng", RngStates(), scope="rank")
    return ckpt


def test_every_registered_component_comes_back(tmp_path, one_rank):
    run_dir = RunDir(tmp_path)
    saver = checkpointer(run_dir, one_rank, Counter(7), FakeEngineFiles(torch.arange(4.0)))
    random.seed(3)
    torch.manual_seed(3)
    np.random.seed(3)
    tag = saver.save(5, Config(output_dir=str(tmp_path)))
    expected = (random.random(), torch.rand(2), np.random.rand())

    counter, engine = Counter(), FakeEngineFiles(None)
    loader = checkpointer(run_dir, one_rank, counter, engine)
    random.seed(99)
    torch.manual_seed(99)
    assert loader.load(run_dir.latest_tag()) is True and tag == run_dir.latest_tag()
    assert counter.n == 7 and torch.equal(engine.weights, torch.arange(4.0))
    got = (random.random(), torch.rand(2), np.random.rand())
    assert got[0] == expected[0] and torch.equal(got[1], expected[1]) and got[2] == expected[2]
    saved = json.loads(run_dir.trainer_state(tag).read_text())
    assert saved == {"step": 5, "world_size": 1, "counter": {"n": 7}}  # only what was registered
    assert run_dir.rank_state(tag, "rng", 0).name == "rng_rank0.pt"


def test_a_component_the_checkpoint_predates_keeps_its_fresh_state(tmp_path, one_rank):
    run_dir = RunDir(tmp_path)
    checkpointer(run_dir, one_rank, Counter(1), FakeEngineFiles(torch.zeros(1))).save(2, Config(output_dir=str(tmp_path)))
    late = Counter(42)
    loader = checkpointer(run_dir, one_rank, Counter(), FakeEngineFiles(None))
    loader.register("late", late)
    assert loader.load(run_dir.latest_tag()) and late.n == 42


def test_a_fresh_run_loads_nothing_and_names_are_registered_once(tmp_path, one_rank):
    ckpt = checkpointer(RunDir(tmp_path), one_rank, Counter(5), FakeEngineFiles(None))
    assert ckpt.load(None) is False
    with pytest.raises(ValueError, match="'counter' is already registered"):
        ckpt.register("counter", Counter())
    with pytest.raises(ValueError, match="scope must be one of"):
        ckpt.register("other", Counter(), scope="node")
