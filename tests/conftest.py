"""Shared test set-up: the markers and tiers, and a small Hugging Face ``tokenizer.json``."""

import json

import pytest


def pytest_addoption(parser):
    parser.addoption("--stress", action="store_true",
                     help="run the stress tier only (tests marked stress; make test-stress), never part of make test")


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: multi-process end-to-end runs (tests/e2e)")
    config.addinivalue_line("markers", "slurm: needs a real Slurm started by slurm/cluster.sh")
    config.addinivalue_line("markers", "stress: slow repeated launches under load; only with --stress")


def pytest_collection_modifyitems(config, items):
    """Without ``--stress`` the stress tests are deselected (not skipped: no skip to explain); with it,
    everything else is."""
    stress = config.getoption("--stress")
    keep = [item for item in items if (item.get_closest_marker("stress") is not None) == stress]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


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
