"""Typed run configuration: a tree of dataclasses loaded from YAML.

``load_config(path, overrides)`` reads a YAML file, applies dotted
``key=value`` overrides and builds the tree. Unknown keys and wrong types are
:class:`ConfigError` s that name the key and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from flanforge.config_fields import may_change
from flanforge.constants import HELDOUT_DATA, SCORING_CONVENTIONS
from flanforge.errors import ConfigError, TaskError, did_you_mean
from flanforge.sizes import parse_bytes
from flanforge.files import atomic_write
from flanforge.text import read_text
from flanforge.mixtures.config import MixtureConfig
from flanforge.mixtures.storage.config import StorageConfig
from flanforge.model.config import ModelConfig


def _at_least(section: object, prefix: str, minimum: float, *keys: str) -> None:
    """Raise naming ``prefix.key`` unless every key's value is >= ``minimum``."""
    for key in keys:
        value = getattr(section, key)
        if value < minimum:
            raise ConfigError(f"{prefix}.{key} must be at least {minimum}, got {value!r}")


@dataclass
class TrainConfig:
    """Optimisation and the step budget."""

    max_steps: int = may_change(300)
    """Optimizer steps to run."""
    micro_batch_size: int = may_change(4)
    """Packed rows per rank per forward pass."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = may_change(1e-3)
    """Peak learning rate (AdamW)."""
    weight_decay: float = may_change(0.0)
    betas: tuple[float, float] = (0.9, 0.95)
    schedule: Literal["constant", "linear", "cosine"] = may_change("constant")
    """LR schedule after warmup; FLAN used a constant rate."""
    warmup_steps: int = may_change(0)
    grad_clip: float = may_change(1.0)
    """Clip the global gradient norm to this (0 disables)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 on GPUs that have it, fp32 elsewhere (CPUs; fp16 only when asked for). fp32 matmuls on a
    GPU may use TF32."""
    loss_normalization: Literal["global_token", "sequence"] = "global_token"
    """``global_token``: mean over every target token of the global batch; ``sequence``: mean of per-example means."""
    log_every: int = may_change(1)
    """Write TensorBoard scalars every this many steps."""
    log_top_tasks: int = may_change(16)
    """Log a per-task loss for this many tasks, the ones with the highest mixing rates."""
    max_nonfinite_in_a_row: int = may_change(5)
    """Stop the run after this many consecutive non-finite losses."""

    def __post_init__(self) -> None:
        for key in ("max_steps", "micro_batch_size", "grad_accum", "log_every", "max_nonfinite_in_a_row"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        _at_least(self, "train", 0, "warmup_steps", "weight_decay", "grad_clip", "log_top_tasks")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must both be in [0, 1), got {list(self.betas)}")


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
    offload_optimizer: bool = may_change(False)
    """Keep optimizer states on the CPU (ZeRO-Offload)."""
    offload_param: bool = may_change(False)
    """Keep parameters on the CPU (ZeRO-3 only)."""
    grad_dtype: Literal["fp32", "bf16", "fp16"] = may_change("fp32")
    """Half-precision runs: the dtype gradients are accumulated and reduced in (DeepSpeed's
    ``grad_accum_dtype`` and ``communication_data_type``); fp32 for stability, as the anchors recommend."""
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
    master_port: int = 0
    """Rendezvous port. 0: a port free on this host when the ranks start (one node only:
    several nodes must agree on one, which ``slurm/train.sbatch`` derives from the job id)."""
    threads_per_rank: int = 1
    """``OMP_NUM_THREADS`` for each CPU rank (ranks fight for cores otherwise)."""
    mmap_threshold: Optional[str] = None
    """CPU ranks: fix glibc's mmap threshold at this size (e.g. ``1MiB``, through ``GLIBC_TUNABLES``), so that
    every tensor from that size up goes back to the OS when freed. ``None``: glibc's default, whose
    threshold rises with what is freed and keeps a step's freed tensors in its heap. At 1MiB the peak
    host memory of a rank was 0.74-0.80x of the default's, its speed 0.80-0.87x (BENCHMARKS.md):
    for fitting a large model in a node's RAM, not for speed."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where ranks compute: ``auto`` (GPUs when torch sees them; a job that was given GPUs and sees none is an
    error, never a silent CPU run), ``cuda`` (GPUs or an error), ``cpu``. See ``launcher/ranks/devices.py``."""
    gpu_memory: Optional[str] = None
    """Memory of each GPU, e.g. ``80GiB`` or ``80GB`` (units: ``UNITS``). ``flanforge train`` refuses,
    before any rank starts, a setting ``flanforge plan`` predicts not to fit it, naming the nearest one
    that does. ``None``: the node's, as ``nvidia-smi`` reports it (no check without it); CPU ranks are
    checked against the node's RAM."""
    ignore_memory_plan: bool = False
    """Train even when the plan predicts that the setting does not fit the ranks' memory (``launch.gpu_memory``,
    or the node's)."""

    def __post_init__(self) -> None:
        _at_least(self, "launch", 0, "nproc_per_node", "node_rank")
        _at_least(self, "launch", 0, "master_port")
        _at_least(self, "launch", 1, "nnodes", "threads_per_rank")
        if self.gpu_memory is not None:
            parse_bytes(self.gpu_memory, "launch.gpu_memory")
        if self.mmap_threshold is not None:
            parse_bytes(self.mmap_threshold, "launch.mmap_threshold")
        if self.nnodes > 1 and self.master_port == 0:
            raise ConfigError(f"launch.master_port must be set (not 0) when launch.nnodes={self.nnodes}: "
                              "every node's launcher must use the same port")
        if self.node_rank >= self.nnodes or self.master_port > 65535:
            raise ConfigError(f"launch.node_rank must be < launch.nnodes ({self.nnodes}) and launch.master_port "
                              f"<= 65535, got {self.node_rank} and {self.master_port}")


@dataclass
class EvalConfig:
    """Evaluation between training steps: ``flanforge eval``'s code, run on every rank, logged to TensorBoard."""

    every_steps: int = 0
    """Evaluate every this many steps (0: never): ``eval/<suite>/<task>/<metric>``, ``eval/<suite>/mean``
    and ``val/loss`` (per sub-mixture ``val/loss/<name>``). It reads neither the data stream nor any RNG
    training uses, so the training losses are the same with and without it."""
    suites: list[str] = field(default_factory=list)
    """Suites as ``flanforge eval --suites`` takes them; empty: the training mixture (its validation split)."""
    max_examples_per_task: int = 20
    """Validation records per task, for the suites and for ``val/loss``."""
    batch_size: int = 16
    """Examples per forward (or per ``generate``)."""
    convention: str | None = None
    """How rank classification scores an option: ``t5x`` (option tokens + EOS) or ``lm-eval`` (the
    continuation as lm-evaluation-harness builds it); None: ``t5x`` for T5, ``lm-eval`` for decoders."""
    data: dict[str, str] = field(default_factory=dict)
    """The ``flan2022_heldout`` suite's data directories by benchmark (``mmlu``, ``bbh``, ``gsm8k``), as
    ``flanforge eval --data KEY=DIR`` gives them; ``flanforge eval RUN`` reads them when ``--data`` is not given."""

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.max_examples_per_task < 1 or self.batch_size < 1:
            raise ConfigError("eval.every_steps must be >= 0, eval.max_examples_per_task and eval.batch_size >= 1")
        if self.convention is not None and self.convention not in SCORING_CONVENTIONS:
            raise ConfigError(f"eval.convention: unknown '{self.convention}' (conventions: "
                              f"{', '.join(SCORING_CONVENTIONS)}){did_you_mean(self.convention, SCORING_CONVENTIONS)}")
        for key in self.data:
            if key not in HELDOUT_DATA:
                raise ConfigError(f"eval.data: unknown benchmark '{key}' (benchmarks: {', '.join(HELDOUT_DATA)})"
                                  f"{did_you_mean(key, HELDOUT_DATA)}")


@dataclass
class Config:
    """The whole run. Keys that may change when a run resumes are marked ``may_change``
    (a marked section: every key under it); the others must stay equal."""

    output_dir: str = may_change("runs/demo")
    """Run directory: config.yaml, tokenizer/, tensorboard/, checkpoints/."""
    seed: int = 1234
    model: ModelConfig = field(default_factory=ModelConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    storage: StorageConfig = may_change(default_factory=StorageConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = may_change(default_factory=CheckpointConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    launch: LaunchConfig = may_change(default_factory=LaunchConfig)
    eval: EvalConfig = may_change(default_factory=EvalConfig)


def _closest(key: str, valid: list[str]) -> str:
    return did_you_mean(key, valid, otherwise=f"; valid keys: {', '.join(valid)}")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, else raise."""
    origin = typing.get_origin(tp)
    if tp is Any:  # free values (model.hf_config, deepspeed.extra): any YAML, but no NaN or infinity
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        if isinstance(value, (dict, list)):
            for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
                _check_type(v, Any, f"{key}.{k}" if isinstance(value, dict) else f"{key}[{k}]")
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
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}{did_you_mean(str(value), choices, cutoff=0.6)}")
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
    if tp is float:
        return _finite(value, key)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _finite(value: Any, key: str) -> float:
    """``value`` as a finite float: ints widen, and YAML 1.1 reads "3e-4" (no dot) as a string."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return float(number)


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
            raise ConfigError(f"unknown config key {full!r}{_closest(full, valid)}")
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
        raise ConfigError(f"override {override!r} is not of the form key=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    if key not in all_keys() and not _under_free_mapping(key):
        raise ConfigError(f"unknown config key {key!r}{_closest(key, all_keys())}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"override {override!r}: not a valid YAML value: {err}".replace("\n", " ")) from None
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
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
            data = yaml.safe_load(read_text(path, declarable=False)) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to be a config") from None
        except TaskError as err:  # bytes that are not UTF-8
            raise ConfigError(str(err)) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for override in overrides:
        apply_override(data, override)
    try:
        return config_from_dict(data)
    except ConfigError as err:
        culprit = _override_named_in(str(err), overrides)
        where = f"override {culprit!r}: " if culprit else f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def _override_named_in(message: str, overrides: list[str]) -> str | None:
    """The command-line override whose key (or a key under it) an error message names: the
    culprit is that override, not the config file it overrides. The last one wins, as it did."""
    found = None
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message):
            found = override
    return found


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
    atomic_write(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
