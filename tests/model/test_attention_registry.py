"""Attention implementations are registered objects: one file and one ``register`` line each,
``auto`` picks among the registered ones by capability and priority, and an implementation
registered by a test alone is chosen, accepted by the config and trains a decoder."""

import ast
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from flanforge.errors import ConfigError
from flanforge.launcher.config import load_config
from flanforge.model import attention
from flanforge.model.attention.flex import flex_available
from flanforge.model.config import ModelConfig
from flanforge.model.load import build_model
from flanforge.model.training_forward import TrainingModel

PACKAGE = Path(attention.__file__).parent
HELPERS = {"__init__", "base", "masks"}  # the registry, the base class and the shared masks


def test_every_builtin_is_one_file_ending_with_one_registration():
    files = {path.stem for path in PACKAGE.glob("*.py")} - HELPERS
    for stem in files | HELPERS:
        body = ast.parse((PACKAGE / f"{stem}.py").read_text()).body
        calls = [node for node in body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                 and getattr(node.value.func, "id", None) == "register"]
        assert calls == ([body[-1]] if stem in files else []), stem
    by_file = {type(attention.get(name)).__module__: name for name in attention.names()}
    assert by_file == {f"flanforge.model.attention.{stem}": stem for stem in files}  # each file is its name


# (device, training, arch, attention dropout) -> auto's choice, as it was before the registry.
AUTO = {
    ("cpu", True, "decoder", 0.0): "segments", ("cpu", True, "decoder", 0.1): "segments",
    ("cpu", True, "t5", 0.0): "sdpa_mask", ("cpu", True, "t5", 0.1): "sdpa_mask",
    ("cuda", True, "decoder", 0.0): "flex", ("cuda", True, "decoder", 0.1): "segments",
    ("cuda", True, "t5", 0.0): "flex", ("cuda", True, "t5", 0.1): "sdpa_mask",
    **{(device, False, arch, dropout): "sdpa_mask"
       for device, arch, dropout in itertools.product(("cpu", "cuda"), ("decoder", "t5"), (0.0, 0.1))},
}


@pytest.mark.skipif(not flex_available(), reason="this torch has no FlexAttention")
def test_auto_chooses_as_before():
    chosen = {(device, training, arch, dropout): attention.resolve("auto", device, training=training, dropout=dropout,
                                                                   arch=arch)
              for device, training, arch, dropout in AUTO}
    assert chosen == AUTO


class CountingDense(attention.DenseMask):
    """The dense segment mask through transformers' sdpa function, counting masks and calls;
    preferred for training over every built-in, and it runs anywhere."""

    name = "counting_dense"
    hf_name = "flanforge_test_counting_dense"
    training_priority = 1000

    def __init__(self):
        self.masks = self.calls = 0

    def mask(self, q_segments, k_segments, *, causal, dtype):
        self.masks += 1
        return super().mask(q_segments, k_segments, causal=causal, dtype=dtype)

    def forward(self, module, query, key, value, attention_mask, **kwargs):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        self.calls += 1
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


@pytest.fixture
def counting():
    with attention.registered(CountingDense()) as impl:
        yield impl
    assert "counting_dense" not in attention.names()


def test_a_registered_implementation_is_chosen_and_accepted(counting):
    assert attention.resolve("auto", "cpu") == attention.resolve("auto", "cuda", arch="t5") == "counting_dense"
    assert attention.resolve("auto", "cpu", training=False) == "sdpa_mask"  # no evaluation priority
    assert load_config(None, ["model.attention=counting_dense"]).model.attention == "counting_dense"


def test_an_unregistered_name_is_refused_naming_the_closest():
    with pytest.raises(ConfigError) as err:
        ModelConfig(attention="counting_dense")
    assert str(err.value) == f"model.attention: 'counting_dense' is not one of {list(attention.choices())}"
    with pytest.raises(ConfigError, match=r"^override 'model.attention=flx': model.attention: 'flx' is not one of "
                                          r"\['auto', .*\]; did you mean 'flex'\?$"):
        load_config(None, ["model.attention=flx"])


def test_register_refuses_clashes():
    for clash in (dict(name="flex"), dict(hf_name="sdpa"), dict(training_priority=20), dict(name="auto")):
        impl = type("Clash", (CountingDense,), clash)()
        with pytest.raises(ValueError):
            attention.register(impl)
    assert "counting_dense" not in attention.names()


def packed_batch(vocab):
    """Two rows: two examples and padding, then one example filling the row; next-token labels."""
    seg = torch.tensor([[1] * 5 + [2] * 4 + [0] * 3, [1] * 12])
    ids = torch.randint(2, vocab, seg.shape, generator=torch.Generator().manual_seed(0))
    starts = torch.cat([torch.ones(2, 1, dtype=torch.bool), seg[:, 1:] != seg[:, :-1]], dim=1)
    index = torch.arange(seg.shape[1]).expand_as(seg)
    pos = index - torch.cummax(torch.where(starts, index, 0), dim=1).values  # restarting per example
    labels = ids.roll(-1, dims=1).masked_fill(seg == 0, -100)
    return {"input_ids": ids, "segment_ids": seg, "position_ids": pos, "labels": labels}


def train_step(model, batch):
    """(implementation, loss, a weight's gradient) of one forward and backward of the training forward."""
    wrapped = TrainingModel(model, arch="decoder", fused=False, zero_stage=0)
    model.zero_grad()
    loss, _ = wrapped(batch)
    loss.backward()
    return wrapped.attention, loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()


def test_a_registered_implementation_trains_a_decoder(counting):
    tokenizer = SimpleNamespace(pad_id=0, eos_id=1, bos_id=2, vocab_size=61)
    cfg = ModelConfig(hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                 "num_attention_heads": 4, "num_key_value_heads": 2})
    model = build_model(cfg, tokenizer, seed=0, device_type="cpu")  # model.attention: auto
    batch = packed_batch(tokenizer.vocab_size)
    name, loss, grad = train_step(model, batch)
    assert name == "counting_dense" and counting.masks == 1 and counting.calls == 2  # one mask, two layers
    attention.use(model, "sdpa_mask")
    dense_name, dense_loss, dense_grad = train_step(model, batch)
    assert dense_name == "sdpa_mask" and counting.calls == 2
    assert loss == pytest.approx(dense_loss, rel=1e-6)
    torch.testing.assert_close(grad, dense_grad)
