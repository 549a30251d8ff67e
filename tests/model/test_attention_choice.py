"""model.attention: the choice by device in one place, and a one-line error naming what is available."""

from pathlib import Path

import pytest
import torch

from flanforge.launcher.cli import main
from flanforge.launcher.config import ConfigError, ModelConfig, load_config
from flanforge.errors import UserError
from flanforge.model import attention
from flanforge.model.load import build_model
from flanforge.model.tokenizer import train_tokenizer

TEXTS = [f"Reverse the words: apple river {i} stone cloud tiger {i * 7}" for i in range(300)]


def test_auto_is_per_segment_on_cpu_and_flex_on_cuda():
    assert attention.resolve("auto", "cpu") == "segments"
    assert attention.resolve("auto", "cpu", arch="t5") == "sdpa_mask"
    assert attention.resolve("auto", "cpu", training=False) == "sdpa_mask"
    assert attention.resolve("auto", "cuda", dropout=0.0) == "flex"
    # FlexAttention has no attention dropout: a T5 trained with dropout keeps the dense mask.
    assert attention.resolve("auto", "cuda", dropout=0.1, arch="t5") == "sdpa_mask"
    assert attention.resolve("auto", "cuda", training=False) == "sdpa_mask"  # evaluation: padded batches
    assert attention.resolve("flex", "cuda", training=False, dropout=0.1) == "flex"  # no dropout in eval


def test_flex_runs_forward_only_on_cpu():
    assert attention.resolve("flex", "cpu", training=False) == "flex"
    with pytest.raises(attention.AttentionUnavailable) as err:
        attention.resolve("flex", "cpu")
    assert str(err.value) == (
        f"model.attention=flex is not available on cpu: torch {torch.__version__} has no FlexAttention "
        "backward on CPU (forward only); available: auto, sdpa_mask, eager_mask, segments"
    )


def test_flex_with_attention_dropout_names_the_dropout():
    with pytest.raises(attention.AttentionUnavailable, match="no attention dropout and the model's is 0.1; available: "
                                                             "auto, sdpa_mask, eager_mask, segments$"):
        attention.resolve("flex", "cuda", dropout=0.1)


def test_build_model_refuses_flex_training_on_cpu_before_any_step(tmp_path):
    tokenizer = train_tokenizer(TEXTS, tmp_path, vocab_size=300)
    cfg = ModelConfig(attention="flex", hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1})
    with pytest.raises(UserError, match=r"^model.attention=flex is not available on cpu: .*; available: auto, "):
        build_model(cfg, tokenizer, seed=0)
    model = build_model(cfg, tokenizer, seed=0, training=False)  # evaluation may use it
    assert attention.implementation_of(model) == "flex"
    assert model.config._attn_implementation == attention.get("flex").hf_name


def test_flanforge_train_refuses_it_before_any_rank_starts(tmp_path, monkeypatch, capsys):
    """``flanforge train`` outside a rank checks first: no model built, no launcher started."""
    for var in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    demo = str(Path(__file__).parents[2] / "configs" / "demo.yaml")
    assert main(["train", "--config", demo, f"output_dir={tmp_path}", "model.attention=flex"]) == 2
    assert capsys.readouterr().err == (
        "flanforge train: error: model.attention=flex is not available on cpu: torch "
        f"{torch.__version__} has no FlexAttention backward on CPU (forward only); "
        "available: auto, sdpa_mask, eager_mask, segments\n")
    assert not (tmp_path / "config.yaml").exists()  # no rank ever started


def test_unknown_attention_names_the_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  attention: flx\n")
    with pytest.raises(ConfigError, match="flex"):
        load_config(path, [])
