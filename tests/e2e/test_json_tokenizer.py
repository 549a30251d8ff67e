"""A run on a Hugging Face ``tokenizer.json`` (Llama-3 style: no pad token, BOS added by
its post-processor): 2 CPU ranks train on it, and ``flanforge export`` ships it."""

import json

import pytest

pytestmark = pytest.mark.e2e


def test_train_and_export_with_a_tokenizer_json(tmp_path, json_tokenizer_dir, run_train, read_scalars):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flanforge.launcher.cli import main
    from flanforge.model.tokenizer import load_tokenizer

    out = tmp_path / "run"
    proc = run_train(out, "train.max_steps=4", "checkpoint.every_steps=4", f"model.tokenizer_path={json_tokenizer_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [s for s, _ in read_scalars(out, "train/loss")] == [1, 2, 3, 4]
    assert not (out / "tokenizer").exists()  # nothing trained: the configured tokenizer is the run's

    assert main(["export", str(out), "--out", str(tmp_path / "hf")]) == 0
    exported = tmp_path / "hf"
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in exported.iterdir()}
    assert not (exported / "spiece.model").exists()
    ours = load_tokenizer(json_tokenizer_dir)
    tok = AutoTokenizer.from_pretrained(exported, local_files_only=True)
    text = "Reverse the words: stone cloud 12"
    assert tok(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    model = AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    assert model.get_input_embeddings().num_embeddings == ours.vocab_size
    config = json.loads((exported / "config.json").read_text())
    assert (config["eos_token_id"], config["pad_token_id"], config["bos_token_id"]) == (ours.eos_id, ours.eos_id, ours.bos_id)
