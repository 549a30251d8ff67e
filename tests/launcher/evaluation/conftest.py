"""Tiny models for in-process evaluations: a random HF model saved with ``save_pretrained`` next to a
SentencePiece tokenizer trained here on the demo mixture's renderings."""

import random
import shutil

import pytest

from flanforge.launcher.cli import main
from flanforge.launcher.config import Config, dump_config
from flanforge.mixtures import registry
from flanforge.model.config import ModelConfig
from flanforge.model.load import build_model
from flanforge.model.tokenizer import train_tokenizer

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


TINY_T5 = {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2}


def make_run(root, tokenizer_dir, model_cfg, **sections):
    """A run directory before its first step: config.yaml (``sections``: other config sections) and the
    tokenizer (enough for untuned:)."""
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    dump_config(Config(output_dir=str(root), model=model_cfg, **sections), root / "config.yaml")
    return root


def save_hf(run, out):
    """The run's untuned model saved as a Hugging Face directory."""
    from flanforge.launcher.export.run import load_run
    from flanforge.launcher.training.rundir import RunDir

    cfg, tokenizer = load_run(RunDir(run))
    build_model(cfg.model, tokenizer, cfg.seed, training=False).save_pretrained(out)
    shutil.copyfile(tokenizer.path, out / "spiece.model")
    return out


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    registry.reset()
    texts = []
    rng = random.Random(0)
    for task in registry.get_mixture("demo").tasks():
        for i in range(40):
            ex = task.render(task.records("train")[i], rng, i)
            texts += [ex.inputs, ex.targets]
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts, out, vocab_size=500)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tokenizer_dir):
    return make_run(tmp_path_factory.mktemp("run"), tokenizer_dir, ModelConfig(vocab_size=500, hf_config=dict(TINY)))


@pytest.fixture(scope="module")
def hf_dir(run_dir, tmp_path_factory):
    return save_hf(run_dir, tmp_path_factory.mktemp("hf") / "model")


def evaluate(capsys, *argv) -> int:
    code = main(["eval", *map(str, argv)])
    capsys.readouterr()
    return code
