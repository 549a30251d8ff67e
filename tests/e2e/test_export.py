"""``flanforge export`` round trip: tiny 2-rank ZeRO-1/2/3 runs, exported, loaded with ``from_pretrained``.

How the processes start: each run is ``flanforge train`` (the ``run_train``
fixture), which starts DeepSpeed's launcher with 2 CPU ranks. Then one more
``deepspeed`` launch, 2 CPU ranks, runs tests/e2e/export_probe.py over all runs:
it rebuilds each trained engine through the project's own code and
``launcher.training.checkpoint.Checkpointer``, and records its logits and per-token losses on a
fixed batch. The export itself runs in this process, through the CLI.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.e2e

PROBE = Path(__file__).with_name("export_probe.py")
STEPS = ["train.max_steps=4", "checkpoint.every_steps=4"]
# conftest's TINY sets decoder keys (hidden_size, ...); a T5 run replaces the whole mapping.
TINY_T5 = ["model.arch=t5", "model.hf_config={d_model: 64, d_ff: 128, d_kv: 16, num_layers: 2, "
           "num_decoder_layers: 2, num_heads: 4}"]
RUNS = {
    "decoder-zero1": ["deepspeed.zero_stage=1"],
    "decoder-zero2": ["deepspeed.zero_stage=2"],
    "decoder-zero3": ["deepspeed.zero_stage=3"],
    "t5-zero3": ["deepspeed.zero_stage=3", *TINY_T5],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, run_train):
    """name -> (run directory, CompletedProcess) of each tiny training run."""
    root = tmp_path_factory.mktemp("export_runs")
    out = {}
    for name, overrides in RUNS.items():
        proc = run_train(root / name, *STEPS, *overrides)
        out[name] = (root / name, proc)
    return out


def trained(runs, name) -> Path:
    run_dir, proc = runs[name]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def engine_outputs(runs, tmp_path_factory, run_probe):
    """name -> the probe's record for that run: inputs, batch, logits, losses (one 2-rank launch for all)."""
    done = {name: run_dir for name, (run_dir, proc) in runs.items() if proc.returncode == 0}
    out_file = tmp_path_factory.mktemp("probe") / "engine_outputs.pt"
    run_probe(PROBE, 2, out_file, *done.values())
    results = torch.load(out_file, weights_only=False)
    return {name: results[str(run_dir)] for name, run_dir in done.items()}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """name -> the HF directory ``flanforge export`` wrote for that run."""
    from flanforge.launcher.cli import main

    root = tmp_path_factory.mktemp("exported")
    out = {}
    for name, (run_dir, proc) in runs.items():
        if proc.returncode == 0:
            assert main(["export", str(run_dir), "--out", str(root / name)]) == 0
            out[name] = root / name
    return out


def load_exported(path: Path, name: str):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if name.startswith("t5") else AutoModelForCausalLM
    return auto.from_pretrained(path, local_files_only=True)


def forward_logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits.float()  # (B, T, V)


@pytest.mark.parametrize("name", RUNS)
def test_exported_logits_match_the_trained_engine(name, runs, engine_outputs, exported):
    run_dir = trained(runs, name)
    ref = engine_outputs[name]
    assert ref["step"] == 4
    model = load_exported(exported[name], name)
    assert not model.training
    logits = forward_logits(model, ref["inputs"])
    assert logits.shape == ref["logits"].shape
    assert torch.allclose(logits, ref["logits"], rtol=1e-5, atol=1e-5), (logits - ref["logits"]).abs().max()

    # The engine's logits are the trained weights', not the initial ones.
    from flanforge.launcher.config import load_config
    from flanforge.model.load import build_model
    from flanforge.model.tokenizer import load_tokenizer

    cfg = load_config(run_dir / "config.yaml")
    init = build_model(cfg.model, load_tokenizer(run_dir / "tokenizer"), cfg.seed).eval()
    assert (forward_logits(init, ref["inputs"]) - ref["logits"]).abs().max() > 1e-3


@pytest.mark.parametrize("name", RUNS)
def test_exported_model_computes_the_training_loss(name, runs, engine_outputs, exported):
    """Per-token cross-entropy of the exported model's logits equals the trainer's forward (fused LM head + loss)."""
    trained(runs, name)
    ref = engine_outputs[name]
    logits = forward_logits(load_exported(exported[name], name), ref["inputs"])
    labels = ref["batch"]["labels"]
    losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    assert torch.allclose(losses.view_as(labels), ref["losses"], rtol=1e-4, atol=1e-4), \
        (losses.view_as(labels) - ref["losses"]).abs().max()


@pytest.mark.parametrize("name", RUNS)
def test_exported_directory(name, runs, exported):
    import json

    import sentencepiece as spm
    from transformers import AutoTokenizer

    run_dir = trained(runs, name)
    out = exported[name]
    assert {p.name for p in out.iterdir()} == {
        "config.json", "generation_config.json", "model.safetensors",
        "spiece.model", "tokenizer.json", "tokenizer_config.json",
    }
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["T5ForConditionalGeneration" if name.startswith("t5") else "LlamaForCausalLM"]
    generation = json.loads((out / "generation_config.json").read_text())
    assert (generation["eos_token_id"], generation["pad_token_id"]) == (1, 0)
    assert (out / "spiece.model").read_bytes() == (run_dir / "tokenizer" / "spiece.model").read_bytes()

    sp = spm.SentencePieceProcessor(model_file=str(run_dir / "tokenizer" / "spiece.model"))
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = "Question: is 17 a prime number? Options: yes, no. Answer:"
    assert tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text)


def test_cli_refuses_then_overwrites_with_a_progress_bar(runs, exported, capsys):
    from flanforge.launcher.cli import main

    run_dir = trained(runs, "decoder-zero3")
    out = exported["decoder-zero3"]
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(out), "--overwrite", "--tag", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out.resolve())
    assert "consolidating step_00000004" in captured.err and "100%" in captured.err
    assert (out / "model.safetensors").read_bytes() == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp directory left behind


def test_truncated_checkpoint_is_one_line_naming_it(runs, tmp_path, capsys):
    """A shard cut short (a full disk, a killed copy) is a one-line error naming the checkpoint."""
    import shutil

    from flanforge.launcher.cli import main

    run_dir = tmp_path / "copy"
    shutil.copytree(trained(runs, "decoder-zero2"), run_dir)
    tag_dir = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    shard = sorted(tag_dir.glob("*_optim_states.pt"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"flanforge export: error: {tag_dir}: checkpoint cannot be read (")
    assert "truncated or damaged" in err[-1] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["decoder-zero3", "t5-zero3"])
def test_sharded_export_loads_with_the_engines_logits(name, runs, engine_outputs, tmp_path):
    """--max-shard-size below the embedding: several files, an index, the embedding alone in one."""
    import json

    from flanforge.launcher.cli import main

    out = tmp_path / "sharded"
    assert main(["export", str(trained(runs, name)), "--out", str(out), "--max-shard-size", "100KB"]) == 0
    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(weight_map.values())) > 2 and not (out / "model.safetensors").exists()
    ref = engine_outputs[name]
    logits = forward_logits(load_exported(out, name), ref["inputs"])
    assert torch.allclose(logits, ref["logits"], rtol=1e-5, atol=1e-5), (logits - ref["logits"]).abs().max()


def test_bf16_export_is_the_fp32_export_cast(runs, exported, tmp_path):
    import json

    from flanforge.launcher.cli import main

    out = tmp_path / "bf16"
    assert main(["export", str(trained(runs, "decoder-zero2")), "--out", str(out), "--dtype", "bf16"]) == 0
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    fp32 = load_exported(exported["decoder-zero2"], "decoder").state_dict()
    bf16 = load_exported(out, "decoder").state_dict()
    assert bf16.keys() == fp32.keys()
    assert all(bf16[k].dtype == torch.bfloat16 and torch.equal(bf16[k], fp32[k].to(torch.bfloat16)) for k in fp32)


def test_disk_without_room_is_refused_before_writing(runs, exported, tmp_path, capsys, monkeypatch):
    from flanforge.launcher.cli import main
    from flanforge.launcher.export import run as export

    monkeypatch.setattr(export.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    assert main(["export", str(trained(runs, "decoder-zero1")), "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    needed = sum(p.numel() * 4 for p in load_exported(exported["decoder-zero1"], "decoder").parameters())
    assert f"the export needs {needed} bytes" in last and "has 1000 free" in last
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_or_over_the_limit_export_leaves_the_previous_one_whole(runs, exported, tmp_path):
    """A real SIGTERM mid-write (the weights in the temporary directory, the tokenizer not yet:
    FLANFORGE_SIGNAL_MID_WRITE), then a real RLIMIT_FSIZE below the weights file (refused before
    writing): one line each, 143 and 2, the previous export untouched and no temporary directory;
    without either, --overwrite writes it again byte for byte."""
    import os
    import resource
    import shutil
    import subprocess
    import sys

    from flanforge.launcher.cli import main

    out = tmp_path / "model"
    shutil.copytree(exported["decoder-zero1"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cmd = [str(Path(sys.executable).with_name("flanforge")), "export", str(trained(runs, "decoder-zero1")),
           "--out", str(out), "--overwrite"]

    def last_line(proc, status):
        assert proc.returncode == status and "Traceback" not in proc.stderr, proc.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert [p.name for p in tmp_path.iterdir()] == ["model"]
        return proc.stderr.strip().splitlines()[-1]

    signalled = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "FLANFORGE_SIGNAL_MID_WRITE": "TERM"})
    assert last_line(signalled, 143) == (
        "flanforge export: interrupted (SIGTERM); nothing partial left, re-run to continue")
    limit = len(before["model.safetensors"]) // 2
    limited = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    line = last_line(limited, 2)
    assert line.startswith(f"flanforge export: error: --out {out}: the export writes a file of ")
    assert line.endswith(f"over the file-size limit (ulimit -f) of {limit} bytes; raise the limit or lower "
                         "--max-shard-size")
    assert main(cmd[1:]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
