"""``flanforge plan`` as a user calls it: the JSON report, the table, bad input in one line (exit 2)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flanforge.launcher import cli
from flanforge.launcher.config import load_config
from flanforge.launcher.ranks.devices import smallest_visible_gpu
from flanforge.sizes import format_bytes, parse_bytes
from flanforge.launcher.planning import memory_plan as mp


def _plan(capsys, *argv):
    code = cli.main(["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_is_the_plans_estimates(capsys):
    code, out, _ = _plan(capsys, "--config", "configs/demo_t5.yaml", "--gpu-memory", "1GiB", "--cpu-memory", "8GB",
                         "--gpus-per-node", "2", "--json")
    assert code == 0
    report = json.loads(out)
    cfg = load_config("configs/demo_t5.yaml")
    w = mp.workload(cfg, 2, 1)
    first = report["settings"][0]
    expected = mp.estimate(w, mp.configured_setting(cfg), 4)
    assert (first["total"], first["activations"], first["cpu_node"]) == (expected.total, expected.activations,
                                                                           expected.cpu_node)
    assert first["max_micro_batch"] == mp.max_micro_batch(w, mp.configured_setting(cfg), 2**30)
    assert report["model"]["arch"] == "t5" and report["gpu_memory"] == 2**30 and report["cpu_memory"] == 8 * 10**9
    assert len(report["settings"]) == len(mp.alternatives(mp.configured_setting(cfg)))


def test_table_names_the_nearest_fitting_setting(capsys):
    code, out, _ = _plan(capsys, "--config", "configs/demo.yaml", "--gpu-memory", "560MiB")
    assert code == 0
    assert "(configured)" in out.splitlines()[6]
    assert "NO" in out.splitlines()[6] and "nearest that does: " in out


def test_cpu_ranks_share_the_nodes_memory(capsys):
    code, out, _ = _plan(capsys, "--config", "configs/demo.yaml", "--device", "cpu", "--cpu-memory", "2GiB", "--json")
    assert code == 0
    report = json.loads(out)
    cfg = load_config("configs/demo.yaml")
    first, expected = report["settings"][0], mp.estimate(mp.workload(cfg, 2, 1, "cpu"), mp.configured_setting(cfg), 4)
    assert report["workload"]["device"] == "cpu" and report["workload"]["precision"] == "fp32"
    assert report["rank_memory"] == 2**30  # the node's 2 GiB over its 2 ranks
    assert (first["total"], first["cpu_node"]) == (expected.total, 2 * expected.total + mp.CPU_LAUNCHER_BYTES)
    assert first["fits"] == (expected.total <= 2**30)


def test_json_is_all_that_the_console_script_prints_on_stdout():
    """DeepSpeed's import-time log lines must not land in the JSON (a fresh process imports it)."""
    flanforge = str(Path(sys.executable).with_name("flanforge"))
    out = subprocess.run([flanforge, "plan", "--config", "configs/demo.yaml", "--json"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["workload"]["gpus_per_node"] == 2


@pytest.mark.parametrize("argv,message", [
    (["--gpu-memory", "80G"], "--gpu-memory: '80G' is not a size"),
    (["--gpu-memory", "80gib"], "did you mean 'GiB'"),
    (["--cpu-memory", "lots"], "--cpu-memory: 'lots'"),
    (["--gpus-per-node", "0"], "--gpus-per-node 0"),
    (["--nodes", "2", "--gpus-per-node", "3"], "contradicts launch.nproc_per_node=2"),
    (["model.hf_config.hidden_size=-8"], "model.hf_config=.* cannot be built"),
    (["--device", "cpu", "--gpu-memory", "80GiB"], "--gpu-memory with CPU ranks"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = _plan(capsys, "--config", "configs/demo.yaml", *argv)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if "WARNING" not in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert re.search(message, lines[0])


@pytest.mark.parametrize("text,size", [("80GiB", 80 * 2**30), ("80GB", 80 * 10**9), ("1TiB", 2**40),
                                       ("1.5 GB", 1_500_000_000), ("512B", 512)])
def test_sizes_parse_strictly(text, size):
    assert parse_bytes(text, "x") == size


def test_train_refuses_a_setting_that_does_not_fit_before_any_rank_starts(capsys, tmp_path, monkeypatch):
    from flanforge.launcher.ranks import launch

    monkeypatch.setattr(launch, "launch_ranks", lambda *a, **k: pytest.fail("a rank started"))
    code = cli.main(["train", "--config", "configs/demo.yaml", f"output_dir={tmp_path / 'run'}",
                     "launch.gpu_memory=100MiB"])
    err = capsys.readouterr().err
    assert code == 2 and "launch.gpu_memory=100MiB: flanforge plan predicts" in err and "nearest that fits" in err
    assert cli.main(["train", "--config", "configs/demo.yaml", "launch.gpu_memory=80Gb"]) == 2
    assert "did you mean 'GB'" in capsys.readouterr().err
def test_train_on_cpu_ranks_is_refused_when_the_plan_exceeds_the_nodes_ram(capsys, tmp_path, monkeypatch):
    from flanforge.host_memory import node_memory
    from flanforge.launcher.ranks import launch

    monkeypatch.setattr(launch, "launch_ranks", lambda *a, **k: pytest.fail("a rank started"))
    big = "model.hf_config={hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 48, num_attention_heads: 64}"
    code = cli.main(["train", "--config", "configs/demo.yaml", f"output_dir={tmp_path / 'run'}", "launch.device=cpu",
                     "launch.nproc_per_node=2", big])
    err = capsys.readouterr().err
    ram = format_bytes(node_memory())
    assert code == 2 and f"this node's {ram} of RAM for 2 CPU ranks: flanforge plan predicts" in err
    assert "per CPU rank" in err and "no setting fits" in err and "launch.ignore_memory_plan=true" in err


def test_the_gpu_memory_of_a_node_is_its_smallest_visible_gpu():
    listing = "0, GPU-aaaa, 81559\n1, GPU-bbbb, 40960\n2, GPU-cccc, 81559\n"
    assert smallest_visible_gpu(listing, None) == 40960 * 2**20
    assert smallest_visible_gpu(listing, ["0", "2"]) == 81559 * 2**20
    assert smallest_visible_gpu(listing, ["GPU-bbbb"]) == 40960 * 2**20
    assert smallest_visible_gpu(listing, ["MIG-1234"]) is None  # a MIG slice: its size is not listed
    assert smallest_visible_gpu("No devices were found\n", None) is None


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this node has nvidia-smi")
def test_the_memory_budget_is_the_configs_gpu_memory_else_the_nodes():
    from flanforge.launcher.commands.train import memory_budget
    from flanforge.launcher.ranks.devices import gpu_memory_of_node

    assert gpu_memory_of_node() is None
    cfg = load_config("configs/demo.yaml", ["launch.device=cpu", "launch.nproc_per_node=2"])
    device, per_rank, source = memory_budget(cfg, 2)  # CPU ranks: the node's RAM, always known
    assert device == "cpu" and per_rank > 0 and "of RAM for 2 CPU ranks" in source
    gpu = load_config("configs/demo.yaml", ["launch.gpu_memory=40GiB"])
    assert memory_budget(gpu, 2) == ("cuda", 40 * 2**30, "launch.gpu_memory=40GiB")




def test_the_table_says_how_the_phases_add_up_for_the_ranks_allocator(capsys):
    _, heap, _ = _plan(capsys, "--config", "configs/demo.yaml", "--device", "cpu")
    _, lean, _ = _plan(capsys, "--config", "configs/demo.yaml", "--device", "cpu", "launch.mmap_threshold=1MiB")
    assert "kept in glibc's heap) + the larger of" in heap.splitlines()[3]
    assert "+ the largest of" in lean.splitlines()[3] and "glibc" not in lean.splitlines()[3]
