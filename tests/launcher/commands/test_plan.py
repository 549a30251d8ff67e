"""``flanforge plan`` as a user calls it: the JSON report, the table, bad input in one line (exit 2)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flanforge.launcher import cli
from flanforge.launcher.config import load_config
from flanforge.sizes import parse_bytes
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
    assert "(configured)" in out.splitlines()[5]
    assert "NO" in out.splitlines()[5] and "nearest that does: " in out


def test_cpu_ranks_share_the_nodes_memory(capsys):
    code, out, _ = _plan(capsys, "--config", "configs/demo.yaml", "--device", "cpu", "--cpu-memory", "2GiB", "--json")
    assert code == 0
    report = json.loads(out)
    cfg = load_config("configs/demo.yaml")
    first, expected = report["settings"][0], mp.estimate(mp.workload(cfg, 2, 1, "cpu"), mp.configured_setting(cfg), 4)
    assert report["workload"]["device"] == "cpu" and report["workload"]["precision"] == "fp32"
    assert report["rank_memory"] == 2**30  # the node's 2 GiB over its 2 ranks
    assert (first["total"], first["cpu_node"]) == (expected.total, 2 * expected.total)
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
