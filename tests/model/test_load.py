"""Model and tokenizer from the config: a local HF directory's own tokenizer, and clear errors."""

import pytest

from flanforge.launcher.config import ModelConfig
from flanforge.errors import UserError
from flanforge.model.load import TINY_DECODER, build_model, check_paths, load_configured_tokenizer
from flanforge.model.tokenizer import JsonTokenizer, SentencePieceTokenizer, load_tokenizer, train_tokenizer

TEXTS = [f"Reverse the words: apple river {i} stone cloud tiger {i * 7}" for i in range(300)]
TINY = {**TINY_DECODER, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2}


def save_model(path, tokenizer, vocab_size=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(**TINY, vocab_size=vocab_size or tokenizer.vocab_size)).save_pretrained(path)
    return path


def test_no_tokenizer_configured_means_train_one():
    assert load_configured_tokenizer(ModelConfig()) is None


def test_a_model_directory_brings_its_own_tokenizer(tmp_path, json_tokenizer_dir):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(json_tokenizer_dir, model_dir)
    tokenizer = load_tokenizer(model_dir)
    save_model(model_dir, tokenizer)
    cfg = ModelConfig(path=str(model_dir))
    check_paths(cfg)
    got = load_configured_tokenizer(cfg)
    assert isinstance(got, JsonTokenizer) and got.path == model_dir / "tokenizer.json"
    model = build_model(cfg, got, seed=0)
    assert model.get_input_embeddings().num_embeddings == tokenizer.vocab_size


def test_tokenizer_path_wins_over_the_model_directory(tmp_path, json_tokenizer_dir):
    spm_tok = train_tokenizer(TEXTS, tmp_path / "spm", vocab_size=400)
    cfg = ModelConfig(path=str(json_tokenizer_dir), tokenizer_path=str(tmp_path / "spm"))
    got = load_configured_tokenizer(cfg)
    assert isinstance(got, SentencePieceTokenizer) and got.path == spm_tok.path


@pytest.mark.parametrize(
    ("key", "message"),
    [("tokenizer_path", "model.tokenizer_path: tokenizer not found"),
     ("path", "model.path: tokenizer not found: {d} holds none of spiece.model")],
)
def test_a_missing_tokenizer_names_the_key(tmp_path, key, message):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=message.format(d=tmp_path).replace("(", r"\(")):
        check_paths(ModelConfig(**{key: str(tmp_path)}))


def test_a_tokenizer_bigger_than_the_embedding_is_refused(tmp_path, json_tokenizer_dir):
    tokenizer = load_tokenizer(json_tokenizer_dir)
    model_dir = save_model(tmp_path / "model", tokenizer, vocab_size=tokenizer.vocab_size - 10)
    cfg = ModelConfig(path=str(model_dir), tokenizer_path=str(json_tokenizer_dir))
    with pytest.raises(UserError, match=f"embeds {tokenizer.vocab_size - 10} tokens but its tokenizer"):
        build_model(cfg, tokenizer, seed=0)
