"""Shared test set-up: the markers, and a small Hugging Face ``tokenizer.json``."""

import json

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: multi-process end-to-end runs (tests/e2e)")
    config.addinivalue_line("markers", "slurm: needs a real Slurm started by slurm/cluster.sh")


BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def write_json_tokenizer(out_dir, texts, vocab_size=400):
    """A Llama-3-style byte-level BPE ``tokenizer.json`` (no pad token; its post-processor
    adds BOS, which flanforge must not use) plus its ``tokenizer_config.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    # eos in the AddedToken form older transformers wrote (Llama-2/3 configs), bos as a plain string.
    eos = {"__type": "AddedToken", "content": EOS, "lstrip": False, "normalized": False, "rstrip": False,
           "single_word": False}
    config = {"bos_token": BOS, "eos_token": eos, "tokenizer_class": "PreTrainedTokenizerFast"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config))
    return out_dir


@pytest.fixture(scope="session")
def json_tokenizer_dir(tmp_path_factory):
    texts = [f"Reverse the words: apple river {i} stone cloud tiger {i * 7}. Answer: yes no" for i in range(300)]
    return write_json_tokenizer(tmp_path_factory.mktemp("json_tokenizer"), texts)
