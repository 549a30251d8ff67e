"""Typed run configuration: a tree of dataclasses loaded from YAML.

``load_config(path, overrides)`` reads a YAML file, applies dotted
``key=value`` overrides and builds the tree. Unknown keys and wrong types are
:class:`ConfigError` s that name the key and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml


class ConfigError(ValueError):
    """An expected user mistake in a config: reported in one line, no traceback."""


@dataclass
class ModelConfig:
    """Which network to train."""

    arch: Literal["decoder", "t5"] = "decoder"
    """``decoder``: an ``AutoModelForCausalLM`` (Llama-style); ``t5``: ``AutoModelForSeq2SeqLM``."""
    path: Optional[str] = None
    """A local Hugging Face model directory. ``None``: random init from ``hf_config``."""
    hf_config: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the HF config class when initialising from scratch."""
    tokenizer_path: Optional[str] = None
    """A local tokenizer: a SentencePiece model, a Hugging Face ``tokenizer.json``, or a directory
    holding ``spiece.model``, ``tokenizer.model`` or ``tokenizer.json``. ``None``: the tokenizer
    in ``model.path``, or (no ``model.path``) one trained on the mixture."""
    vocab_size: int = 2000
    """Vocabulary size of the SentencePiece tokenizer trained on first use."""
    fused_loss: Union[bool, Literal["auto"]] = "auto"
    """Compute the loss with the fused linear cross-entropy kernel (never builds full logits);
    ``auto``: on GPUs always, on CPUs only from a 32k vocabulary (below it plain logits are faster)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""

    def __post_init__(self) -> None:
        if self.vocab_size < 64:
            raise ConfigError(f"model.vocab_size={self.vocab_size} is too small (at least 64)")


@dataclass
class MixtureConfig:
    """What the sampler streams and how rows are packed."""

    name: str = "demo"
    """A registered mixture name, or a path to a task/mixture YAML file."""
    seq_len: int = 128
    """Length of a packed training row, in tokens."""
    include_inputs_in_loss: bool = False
    """Also train on input tokens (FLAN and the SDE study train on targets only)."""
    overlong: Literal["truncate", "drop"] = "truncate"
    """What to do with an example longer than ``seq_len``: cut its input from the left, or drop it."""
    on_bad_record: Literal["error", "skip"] = "error"
    """Malformed source records: stop with an error naming file:line, or skip and count them."""
    weights: dict[str, float] = field(default_factory=dict)
    """Override sub-mixture weights by name (allowed to change on resume)."""
    num_workers: int = 0
    """DataLoader worker processes per rank."""
    block_size: Optional[int] = None
    """Examples per block, the unit of sampling, packing and work split (``None``: ``max(1024, 4 * seq_len)``)."""
    shards_dir: Optional[str] = None
    """Where ``flanforge prepare`` shards live; ``None``: ``<output_dir>/shards``, prepared on first use."""

    def __post_init__(self) -> None:
        if self.seq_len < 8:
            raise ConfigError(f"mixture.seq_len={self.seq_len} is too small (at least 8)")


@dataclass
class TrainConfig:
    """Optimisation and the step budget."""

    max_steps: int = 300
    """Optimizer steps to run."""
    micro_batch_size: int = 4
    """Packed rows per rank per forward pass."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """LR schedule after warmup; FLAN used a constant rate."""
    warmup_steps: int = 0
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    loss_normalization: Literal["global_token", "sequence"] = "global_token"
    """``global_token``: mean over every target token of the global batch; ``sequence``: mean of per-example means."""
    log_every: int = 1
    """Write TensorBoard scalars every this many steps."""
    log_top_tasks: int = 16
    """Log a per-task loss for this many tasks, the ones with the highest mixing rates."""
    max_nonfinite_in_a_row: int = 5
    """Stop the run after this many consecutive non-finite losses."""

    def __post_init__(self) -> None:
        for key in ("max_steps", "micro_batch_size", "grad_accum", "log_every", "max_nonfinite_in_a_row"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class CheckpointConfig:
    """When checkpoints are written and how many are kept."""

    every_steps: int = 100
    """Save every this many steps (and always at the end). 0: only at the end."""
    keep_last: int = 2
    """Keep this many newest checkpoints; older ones are deleted."""

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.keep_last < 1:
            raise ConfigError("checkpoint.every_steps must be >= 0 and checkpoint.keep_last >= 1")


@dataclass
class DeepSpeedConfig:
    """ZeRO settings passed to DeepSpeed's engine."""

    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    """Keep optimizer states on the CPU (ZeRO-Offload)."""
    offload_param: bool = False
    """Keep parameters on the CPU (ZeRO-3 only)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Merged last into the generated DeepSpeed config, for settings flanforge does not name."""

    def __post_init__(self) -> None:
        if self.offload_param and self.zero_stage != 3:
            raise ConfigError("deepspeed.offload_param needs deepspeed.zero_stage=3")


@dataclass
class LaunchConfig:
    """How ``flanforge train`` starts ranks when it is not already inside one."""

    nproc_per_node: int = 0
    """Ranks per node. 0: one per GPU, or 2 CPU ranks when there is no GPU."""
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    threads_per_rank: int = 1
    """``OMP_NUM_THREADS`` for each CPU rank (ranks fight for cores otherwise)."""


@dataclass
class Config:
    """The whole run."""

    output_dir: str = "runs/demo"
    """Run directory: config.yaml, tokenizer/, tensorboard/, checkpoints/."""
    seed: int = 1234
    model: ModelConfig = field(default_factory=ModelConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, else raise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}{extra}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _check_type(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        items = [
            _check_type(v, args[i] if origin is tuple else args[0], f"{key}[{i}]")
            for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no dot) as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            valid = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key '{full}'{_closest(full, valid)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping of {tp.__name__} keys, got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _check_type(value, tp, full)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from None


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the tree (leaves and sections)."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(tp):
            keys += all_keys(tp, f"{prefix}{f.name}.")
    return keys


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the nested dict ``data``; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override '{override}' is not of the form key=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    if key not in all_keys() and not _under_free_mapping(key):
        raise ConfigError(f"unknown config key '{key}'{_closest(key, all_keys())}")
    value = yaml.safe_load(raw) if raw.strip() else ""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{override}': '{part}' is not a section")
    node[parts[-1]] = value


def _under_free_mapping(key: str) -> bool:
    """True for keys inside a ``dict[str, ...]`` field such as ``model.hf_config.hidden_size``."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return False
        tp = hints[part]
        if typing.get_origin(tp) is dict:
            return i < len(parts) - 1
        if not dataclasses.is_dataclass(tp):
            return False
        cls = tp
    return False


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for override in overrides:
        apply_override(data, override)
    try:
        return config_from_dict(data)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML and comparisons."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)
