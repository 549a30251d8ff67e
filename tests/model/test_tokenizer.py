"""SentencePiece tokenizers: trained on first use, or loaded with their own special ids."""

import io

import sentencepiece as spm

from flanforge.model.tokenizer import load_tokenizer, train_tokenizer

TEXTS = [f"Reverse the words: apple river {i} stone cloud tiger {i * 7}" for i in range(300)]


def test_trained_tokenizer_round_trips_and_uses_t5_ids(tmp_path):
    tok = train_tokenizer(TEXTS, tmp_path / "tok", vocab_size=400)
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
    ids = tok.encode("Reverse the words: apple 12")
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == "Reverse the words: apple 12"
    assert load_tokenizer(tmp_path / "tok").encode("apple") == tok.encode("apple")


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
