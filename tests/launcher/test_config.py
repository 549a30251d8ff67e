"""Config loading: YAML + dotted overrides into typed dataclasses, strict about keys and types."""

from pathlib import Path

import pytest

from flanforge.launcher.config import Config, ConfigError, load_config, to_dict

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_overrides_reach_nested_keys(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 10\nmodel:\n  arch: decoder\n")
    cfg = load_config(path, ["train.max_steps=50", "output_dir=/tmp/run", "model.hf_config.hidden_size=64",
                             "train.lr=3e-4", "deepspeed.zero_stage=3", "train.betas=[0.8, 0.9]"])
    assert cfg.train.max_steps == 50
    assert cfg.output_dir == "/tmp/run"
    assert cfg.model.hf_config == {"hidden_size": 64}
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.deepspeed.zero_stage == 3
    assert cfg.train.betas == (0.8, 0.9)
    # untouched keys keep their defaults
    assert cfg.train.micro_batch_size == Config().train.micro_batch_size


def test_int_is_accepted_where_float_is_expected(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lr: 1\n"))
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 1.0


@pytest.mark.parametrize(
    "yaml_text, overrides, names, suggestion",
    [
        ("train:\n  max_step: 5\n", [], "train.max_step", "train.max_steps"),
        ("", ["train.micro_batchsize=2"], "train.micro_batchsize", "train.micro_batch_size"),
        ("modle:\n  arch: t5\n", [], "modle", "model"),
        ("", ["checkpoint.every_step=5"], "checkpoint.every_step", "checkpoint.every_steps"),
    ],
)
def test_unknown_key_names_key_and_closest(tmp_path, yaml_text, overrides, names, suggestion):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, yaml_text), overrides)
    assert f"'{names}'" in str(err.value)
    assert f"did you mean '{suggestion}'" in str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_steps=ten", "train.max_steps"),
        ("train.lr=fast", "train.lr"),
        ("model.fused_loss=3", "model.fused_loss"),
        ("train.max_steps=2.5", "train.max_steps"),
        ("train.precision=fp64", "train.precision"),
        ("deepspeed.zero_stage=4", "deepspeed.zero_stage"),
    ],
)
def test_wrong_type_names_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(f"override '{override}': {key}")  # the override is the culprit


def test_literal_suggests_closest_choice():
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        load_config(None, ["train.schedule=cosin"])


def test_impossible_combination_is_rejected():
    with pytest.raises(ConfigError, match="offload_param"):
        load_config(None, ["deepspeed.offload_param=true", "deepspeed.zero_stage=2"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.max_steps"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert to_dict(cfg)["output_dir"]
    assert cfg.train.max_steps >= 1
