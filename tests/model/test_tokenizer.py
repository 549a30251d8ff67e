"""Tokenizers: SentencePiece trained on first use, or a model's own (SentencePiece or
``tokenizer.json``) loaded with its own special ids."""

import io
import re
import shutil

import pytest
import sentencepiece as spm

from flanforge.model.tokenizer import JsonTokenizer, SentencePieceTokenizer, load_tokenizer, train_tokenizer

TEXTS = [f"Reverse the words: apple river {i} stone cloud tiger {i * 7}" for i in range(300)]


def test_trained_tokenizer_round_trips_and_uses_t5_ids(tmp_path):
    tok = train_tokenizer(TEXTS, tmp_path / "tok", vocab_size=400)
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
    ids = tok.encode("Reverse the words: apple 12")
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == "Reverse the words: apple 12"
    assert load_tokenizer(tmp_path / "tok").encode("apple") == tok.encode("apple")


def test_trained_tokenizer_gives_every_digit_its_own_piece(tmp_path):
    """A number is tokenised the same wherever it stands ("12", "12]", "12?"), one piece per digit."""
    texts = [f"Sort [{i}, {i * 7}]? The sum is {i * 13}." for i in range(300)]
    tok = train_tokenizer(texts, tmp_path / "tok", vocab_size=400)
    pieces = [tok.decode([i]) for i in range(tok.vocab_size)]
    assert [p for p in pieces if any(c.isdigit() for c in p) and len(p.strip()) > 1] == []
    digits = [tok.decode([i]) for i in tok.encode("[12, 84]? 12")]
    assert [d for d in digits if d.strip().isdigit()] == ["1", "2", "8", "4", "1", "2"]


def test_a_model_without_pad_pads_with_eos(tmp_path):
    """Llama-2-style SentencePiece models: unk 0, bos 1, eos 2, no pad piece."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_writer=buf, vocab_size=150,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
    tok = load_tokenizer(tmp_path / "tokenizer.model")
    assert (tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.pad_id == tok.eos_id
    assert tok.decode(tok.encode("stone cloud") + [2]) == "stone cloud"


def test_a_tokenizer_json_encodes_without_special_tokens_and_pads_with_eos(json_tokenizer_dir):
    from tokenizers import Tokenizer as FastTokenizer

    tok = load_tokenizer(json_tokenizer_dir)
    fast = FastTokenizer.from_file(str(json_tokenizer_dir / "tokenizer.json"))
    assert isinstance(tok, JsonTokenizer)
    assert tok.eos_id == fast.token_to_id("<|end_of_text|>") and tok.bos_id == fast.token_to_id("<|begin_of_text|>")
    assert tok.pad_id == tok.eos_id and tok.unk_id == -1
    assert tok.vocab_size == fast.get_vocab_size(with_added_tokens=True)
    text = "Reverse the words: stone cloud 12 ünïcode"
    ids = tok.encode(text)
    assert fast.encode(text).ids == [tok.bos_id, *ids]  # its post-processor adds BOS; flanforge does not
    assert tok.encode_batch([text, "apple"]) == [ids, tok.encode("apple")]
    assert tok.decode([tok.bos_id, *ids, tok.eos_id]) == text


def test_a_directory_prefers_the_sentencepiece_model(tmp_path, json_tokenizer_dir):
    shutil.copytree(json_tokenizer_dir, tmp_path / "model")
    train_tokenizer(TEXTS, tmp_path / "model", vocab_size=400)
    assert isinstance(load_tokenizer(tmp_path / "model"), SentencePieceTokenizer)
    assert isinstance(load_tokenizer(tmp_path / "model" / "tokenizer.json"), JsonTokenizer)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"bos_token": "<|begin_of_text|>"}', "no eos_token in tokenizer_config.json or special_tokens_map.json"),
        ('{"eos_token": "</s>"}', "eos_token '</s>' is not in the vocabulary"),
        ('{"eos_token": "<|end_of_text|>",\n "bos_token": }', "tokenizer_config.json: line 2"),
    ],
    ids=["no-eos", "eos-not-in-vocab", "bad-json"],
)
def test_bad_tokenizer_configs_name_the_file(tmp_path, json_tokenizer_dir, config, message):
    shutil.copy(json_tokenizer_dir / "tokenizer.json", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(config)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_tokenizer(tmp_path)


def test_a_directory_without_a_tokenizer_lists_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="none of spiece.model, tokenizer.model, tokenizer.json"):
        load_tokenizer(tmp_path)
