"""``flanforge export``: bad input is a one-line error; state-dict and tokenizer conversion.

These tests run in one process on hand-made run directories and tiny HF models;
the round trip through real 2-rank ZeRO runs is tests/e2e/test_export.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flanforge.launcher.cli import main
from flanforge.launcher.config import Config, dump_config
from flanforge.errors import UserError
from flanforge.launcher.export.run import (
    check_out_dir,
    export_run,
    load_strict,
    resolve_tag,
    to_hf_state_dict,
)
from flanforge.launcher.export.tokenizer import first_mismatch, hf_tokenizer
from flanforge.launcher.training.rundir import RunDir
from flanforge.model.tokenizer import EOS_ID, train_tokenizer

FLANFORGE = str(Path(sys.executable).with_name("flanforge"))


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    """A small SentencePiece model trained as flanforge trains one (byte fallback, fixed special ids)."""
    words = ["question", "answer", "premise", "hypothesis", "translate", "summarise", "options", "yes", "no"]
    texts = [f"{words[i % 9]}: {i} + {i * 7} = {i * 8}. {words[(i * 5) % 9]} café naïve" for i in range(400)]
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=400).path


def make_run(root: Path, tags=("step_00000002", "step_00000004"), latest="step_00000004", spm=None) -> Path:
    """A run directory as launcher/training/checkpoint.py lays it out, without DeepSpeed shards."""
    run = root / "run"
    run.mkdir()
    dump_config(Config(output_dir=str(run)), run / "config.yaml")
    ckpts = run / "checkpoints"
    ckpts.mkdir()
    for tag in tags:
        (ckpts / tag).mkdir()
        (ckpts / tag / "trainer.json").write_text(json.dumps({"step": int(tag.split("_")[1])}))
    if latest is not None:
        (ckpts / "latest").write_text(latest)
    if spm is not None:
        (run / "tokenizer").mkdir()
        (run / "tokenizer" / "spiece.model").write_bytes(Path(spm).read_bytes())
    return run


def export_error(capsys, *argv) -> str:
    """Run ``flanforge export`` in-process; return its one-line error."""
    assert main(["export", *argv]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("flanforge export: error: ")
    return lines[0]


# --------------------------------------------------------------------------- bad input


def test_run_dir_missing(tmp_path, capsys):
    err = export_error(capsys, str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert "nope" in err and "does not exist" in err


def test_run_dir_without_config(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    err = export_error(capsys, str(tmp_path / "run"), "--out", str(tmp_path / "out"))
    assert "not a flanforge run directory" in err and "config.yaml" in err


def test_run_dir_without_checkpoints(tmp_path, capsys):
    run = make_run(tmp_path, tags=(), latest=None)
    err = export_error(capsys, str(run), "--out", str(tmp_path / "out"))
    assert "no checkpoints" in err
    assert not (tmp_path / "out").exists()


def test_latest_names_a_missing_tag(tmp_path, capsys):
    run = make_run(tmp_path, latest="step_00000009")
    err = export_error(capsys, str(run), "--out", str(tmp_path / "out"))
    assert "step_00000009" in err and "missing or incomplete" in err


def test_unknown_tag_lists_available_closest_first(tmp_path, capsys):
    run = make_run(tmp_path, tags=("step_00000004", "step_00000100", "step_00000200"), latest="step_00000200")
    err = export_error(capsys, str(run), "--out", str(tmp_path / "out"), "--tag", "step_0000010")
    assert "no checkpoint 'step_0000010'" in err
    listed = err.split("closest first): ")[1].split(", ")
    assert listed[0] == "step_00000100"
    assert sorted(listed) == ["step_00000004", "step_00000100", "step_00000200"]


def test_unknown_step_number(tmp_path, capsys):
    run = make_run(tmp_path)
    err = export_error(capsys, str(run), "--out", str(tmp_path / "out"), "--tag", "3")
    assert "no checkpoint 'step_00000003'" in err and "step_00000004" in err


def test_incomplete_tag_is_refused(tmp_path, capsys):
    run = make_run(tmp_path)
    (run / "checkpoints" / "step_00000006").mkdir()  # a save killed before trainer.json
    err = export_error(capsys, str(run), "--out", str(tmp_path / "out"), "--tag", "step_00000006")
    assert "incomplete" in err and "step_00000004" in err


def test_tag_resolution(tmp_path):
    run = make_run(tmp_path)
    assert resolve_tag(RunDir(run)) == "step_00000004"
    assert resolve_tag(RunDir(run), "2") == "step_00000002"
    assert resolve_tag(RunDir(run), "step_00000002") == "step_00000002"


def test_tags_without_latest_ask_for_a_tag(tmp_path):
    run = make_run(tmp_path, latest=None)
    with pytest.raises(UserError, match="--tag: step_00000004, step_00000002"):
        resolve_tag(RunDir(run))


def test_existing_non_empty_out_is_refused(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    err = export_error(capsys, str(run), "--out", str(out))
    assert "not empty" in err and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"


def test_out_dir_checks(tmp_path):
    run = make_run(tmp_path)
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty", RunDir(run), overwrite=False) == (tmp_path / "empty").resolve()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert check_out_dir(tmp_path / "full", RunDir(run), overwrite=True) == (tmp_path / "full").resolve()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        check_out_dir(tmp_path / "file", RunDir(run), overwrite=True)
    for inside in (run, run / "hf", tmp_path):  # --overwrite must never delete the run
        with pytest.raises(UserError, match="outside the run directory"):
            check_out_dir(inside, RunDir(run), overwrite=True)


def test_missing_tokenizer(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(UserError, match="tokenizer is missing"):
        export_run(RunDir(run), tmp_path / "out")


def test_checkpoint_without_zero_shards(tmp_path, spm_file):
    run = make_run(tmp_path, spm=spm_file)
    with pytest.raises(UserError, match=r"no ZeRO optimizer shards .* stage 1, 2 or 3"):
        export_run(RunDir(run), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_console_script_prints_one_line_without_traceback(tmp_path):
    proc = subprocess.run([FLANFORGE, "export", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        f"flanforge export: error: run directory {tmp_path / 'nope'} does not exist"]


# --------------------------------------------------------------------------- state dicts


def tiny_llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied))


def engine_state(model, alias_head=True):
    """What zero_to_fp32 returns for TrainingModel(model): ``hf.``-prefixed, the LM head also as ``head``."""
    state = {f"hf.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    if alias_head:
        state["head.weight"] = state["hf.lm_head.weight"]
    return state


def test_prefix_is_stripped_and_head_alias_dropped():
    source, target = tiny_llama(tied=False), tiny_llama(tied=False)
    torch.nn.init.normal_(source.lm_head.weight)
    state = to_hf_state_dict(engine_state(source), target)
    assert set(state) == set(target.state_dict())
    load_strict(target, state)
    assert torch.equal(target.lm_head.weight, source.lm_head.weight)


def test_tied_embeddings_are_filled_from_the_stored_name():
    source, target = tiny_llama(tied=True), tiny_llama(tied=True)
    torch.nn.init.normal_(source.model.embed_tokens.weight)
    state = engine_state(source, alias_head=False)
    del state["hf.lm_head.weight"]  # a checkpoint keeps one name per tied parameter
    load_strict(target, to_hf_state_dict(state, target))
    assert target.lm_head.weight is target.model.embed_tokens.weight
    assert torch.equal(target.lm_head.weight, source.model.embed_tokens.weight)


def test_tied_embeddings_with_different_values_are_refused():
    source, target = tiny_llama(tied=True), tiny_llama(tied=True)
    state = engine_state(source, alias_head=False)
    state["hf.lm_head.weight"] = state["hf.lm_head.weight"] + 1
    with pytest.raises(UserError, match="tied weights .* differ"):
        to_hf_state_dict(state, target)


def test_t5_shared_embeddings_are_tied():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2)
    source, target = T5ForConditionalGeneration(cfg), T5ForConditionalGeneration(cfg)
    torch.nn.init.normal_(source.shared.weight)
    state = {"hf.shared.weight": source.shared.weight.detach().clone(),
             **{f"hf.{k}": v for k, v in source.state_dict().items() if "embed_tokens" not in k and k != "lm_head.weight"}}
    load_strict(target, to_hf_state_dict(state, target))
    for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(target.state_dict()[name], source.shared.weight), name


def test_weights_outside_the_model_are_refused():
    model = tiny_llama(tied=False)
    state = engine_state(model)
    state["extra.bias"] = torch.zeros(3)
    with pytest.raises(UserError, match="outside the model.*extra.bias"):
        to_hf_state_dict(state, model)


def test_strict_load_names_missing_and_unexpected_keys():
    model = tiny_llama(tied=False)
    state = to_hf_state_dict(engine_state(model), model)
    state.pop("model.norm.weight")
    state["model.layers.7.mlp.up_proj.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match=r"missing model\.norm\.weight; unexpected model\.layers\.7\.mlp\.up_proj\.weight"):
        load_strict(model, state)


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_converted_tokenizer_encodes_as_sentencepiece(spm_file, arch, tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    tok = hf_tokenizer(spm_file, arch, 256)
    assert first_mismatch(tok, spm_file) is None
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert reloaded.model_max_length == 256
    text = "question: 12 + 84 = 96. Ωmega ☃  spaces"
    ids = sp.encode(text)
    assert reloaded(text, add_special_tokens=False)["input_ids"] == ids
    # As in training: T5 inputs end with EOS, decoder prompts get no special tokens.
    assert reloaded(text)["input_ids"] == ids + ([EOS_ID] if arch == "t5" else [])
    assert reloaded.decode(ids) == sp.decode(ids)
    assert (reloaded.pad_token_id, reloaded.eos_token_id) == (0, EOS_ID)


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_an_export_loads_without_warnings(spm_file, arch, tmp_path):
    """The exported directory (weights + the tokenizer export writes) loads in transformers and in
    ``flanforge eval`` without a warning (deprecations included), its tokenizer stating model_max_length."""
    import logging
    import warnings

    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from flanforge.launcher.evaluation.run import load_model
    from flanforge.launcher.export.tokenizer import write_tokenizer
    from flanforge.model.config import ModelConfig
    from flanforge.model.load import build_model
    from flanforge.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(spm_file)
    model = build_model(ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size), tokenizer, 0, training=False)
    model.save_pretrained(tmp_path)
    assert write_tokenizer(tokenizer, tmp_path, arch, 192)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert AutoTokenizer.from_pretrained(tmp_path, local_files_only=True).model_max_length == 192
            (AutoModelForCausalLM if arch == "decoder" else AutoModelForSeq2SeqLM).from_pretrained(tmp_path)
            load_model(str(tmp_path))[2]()
    finally:
        logger.removeHandler(handler)
    assert [str(w.message) for w in caught] == [] and [r.getMessage() for r in records] == []


def test_a_copied_tokenizer_json_gets_model_max_length_unless_it_states_one(json_tokenizer_dir, tmp_path):
    from flanforge.launcher.export.tokenizer import write_tokenizer
    from flanforge.model.tokenizer import load_tokenizer

    assert write_tokenizer(load_tokenizer(json_tokenizer_dir / "tokenizer.json"), tmp_path, "decoder", 96)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config == {**json.loads((json_tokenizer_dir / "tokenizer_config.json").read_text()), "model_max_length": 96}
    stated = tmp_path / "stated"
    stated.mkdir()
    (stated / "tokenizer.json").write_bytes((tmp_path / "tokenizer.json").read_bytes())
    (stated / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 8192}))
    out = tmp_path / "out"
    out.mkdir()
    write_tokenizer(load_tokenizer(stated / "tokenizer.json"), out, "decoder", 96)
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 8192
