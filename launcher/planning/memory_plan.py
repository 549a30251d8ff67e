"""Memory per rank of a training setting, predicted before any rank starts (``flanforge plan``, train's pre-flight).

Per GPU rank, in bytes (``p``: 2 for bf16/fp16 training, 4 for fp32; ``P`` parameters, ``N`` ranks):

- **model states**, as DeepSpeed counts them (``estimate_zero2_model_states_mem_needs``,
  ``estimate_zero3_model_states_mem_needs``; the unit tests check the equality): ``p``-byte
  parameters and gradients, and for the optimizer fp32 gradients, fp32 master weights and Adam's
  two moments (4 + 4 + 8 bytes). ZeRO-1 partitions the optimizer states over ``N``, ZeRO-2 the
  gradients too, ZeRO-3 the parameters too (it reduces gradients straight into the fp32
  partition, and gathers one layer at a time: ``2p`` bytes per parameter of the largest layer).
- **reused parameters** (ZeRO-3, beyond DeepSpeed's estimator): from the second step on, DeepSpeed
  keeps a gathered parameter whole when its next use comes within ``stage3_max_reuse_distance``
  elements of gathers, so after the forward the layers whose backward follows soon stay gathered:
  all of a model smaller than half that distance (1e9 by default), else half the distance's worth.
  Measured on 2 CPU ranks (31M parameters, fp32): the second forward's peak is 4 bytes a parameter
  above the first's, the whole model in fp32.
  Offload moves the optimizer states (and ZeRO-2's gradient partition) or ZeRO-3's parameter
  partition to the CPU.
- **activations** per layer (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models", eq. 1): ``s*b*h*(34 + 5*a*s/h)`` bytes in 16-bit for dense attention (the
  ``eager_mask`` kernel keeps the ``a*s*s`` scores, softmax and dropout mask); the kernels that never
  build the scores (``sdpa_mask``'s memory-efficient kernel, ``flex``, ``segments``) keep ``s*b*h*34``
  and an fp32 log-sum-exp (``4*a*s*b``), and the masked ones one dense ``b*s*s`` mask per forward.
  Full recompute keeps ``2*s*b*h`` per layer plus one layer's activations while it is recomputed.
  T5 decoder layers add a cross-attention block (``13*s*b*h`` and its scores). fp32 doubles all.
- **logits and loss** (every token counted as a target, an upper bound): unfused, the ``[tokens,
  vocab]`` logits, their fp32 copy, log-softmax and gradient; fused, one chunk of fp32 logits
  (``kernels/cross_entropy``) and the fp32 gradients of the hidden states and the head.
- **buckets**: DeepSpeed's gradient reduce bucket, and ZeRO-3's prefetch bucket (``p`` bytes an element).
- **overhead**: :data:`CUDA_CONTEXT_BYTES` and :data:`ALLOCATOR_SLACK` of the rest.

CPU ranks (``flanforge plan --device cpu``, ``launch.device: cpu``): the host is the device, so a
rank holds its model states, offloaded ones included, its activations (the CPU's attention), loss
and buckets, plus :data:`CPU_RANK_BYTES` instead of the CUDA context and allocator slack; the node
holds its ranks' sum.

For GPU ranks, CPU memory per node is the larger of the ranks' model construction (fp32: each rank builds the whole
model, or under ZeRO-3 its partition, one layer gathered at a time: ``deepspeed.zero.Init``) and the
offloaded states, times DeepSpeed's ``additional_buffer_factor`` (1.5).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from flanforge.errors import ConfigError, UserError
from flanforge.kernels.cross_entropy.function import chunk_rows
from flanforge.launcher.config import Config
from flanforge.sizes import format_bytes, parse_bytes
from flanforge.launcher.planning.model_shape import ModelShape, model_shape

CUDA_CONTEXT_BYTES = 512 * 2**20
"""The CUDA context and torch's kernels: about 0.5 GiB on Hopper with CUDA 12's lazy module loading."""
ALLOCATOR_SLACK = 0.10
"""Fragmentation of the caching allocator, as a share of everything else."""
CPU_BUFFER_FACTOR = 1.5
"""DeepSpeed's ``additional_buffer_factor`` for host memory."""
CPU_RANK_BYTES = 640 * 2**20
"""A CPU training rank's host memory besides what the plan counts: Python, torch, DeepSpeed, transformers,
gloo, the data stream and tokenizer, TensorBoard. Measured (``benchmarks/plan_vs_measured.py``): the peak RSS
of 2-rank runs of a 4.2M-parameter model less the parts counted, 613-657 MiB over ZeRO 1/2/3 with and
without recompute; this is their median."""
MAX_MICRO_BATCH = 2**16
_DENSE_SCORES = ("eager_mask",)
_DENSE_MASK = ("eager_mask", "sdpa_mask")


@dataclass(frozen=True)
class Setting:
    """The choices the plan compares."""

    zero_stage: int
    offload_optimizer: bool
    offload_param: bool
    checkpointing: bool
    fused_loss: bool

    def overrides(self) -> dict[str, object]:
        return {"deepspeed.zero_stage": self.zero_stage, "deepspeed.offload_optimizer": self.offload_optimizer,
                "deepspeed.offload_param": self.offload_param, "model.gradient_checkpointing": self.checkpointing,
                "model.fused_loss": self.fused_loss}

    def label(self) -> str:
        offload = "+".join(n for n, on in (("opt", self.offload_optimizer), ("param", self.offload_param)) if on)
        return (f"zero{self.zero_stage} offload={offload or 'none'} ckpt={'on' if self.checkpointing else 'off'} "
                f"loss={'fused' if self.fused_loss else 'unfused'}")


@dataclass(frozen=True)
class Workload:
    """What does not change between settings: the model, the rows, the precision and the ranks."""

    shape: ModelShape
    precision: str
    seq_len: int
    attention: str
    gpus_per_node: int
    nodes: int
    reduce_bucket: int
    prefetch_bucket: int
    reuse_distance: int = 1_000_000_000
    device: str = "cuda"

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def p(self) -> int:
        """Bytes of a parameter, gradient or activation element."""
        return 4 if self.precision == "fp32" else 2


@dataclass(frozen=True)
class ModelStates:
    """Bytes per parameter of each state: ``full`` on every rank, ``sharded`` over the ranks on the
    GPU, ``offloaded`` over the ranks on the CPU; ``gathered``: ZeRO-3's gathered layer, bytes;
    ``built``: the parameters each rank builds whole (the model, or ZeRO-3's largest layer)."""

    params: int
    world: int
    nodes: int
    full: dict[str, int]
    sharded: dict[str, int]
    offloaded: dict[str, int]
    gathered: int
    built: int

    def component(self, name: str, host: bool = False) -> int:
        """GPU bytes per rank of one state (``params``, ``gradients``, ``optimizer``); ``host``: a CPU
        rank's, whose offloaded share is in the same memory."""
        offloaded = self.offloaded.get(name, 0) if host else 0
        return int(self.params * self.full.get(name, 0) + self.params * (self.sharded.get(name, 0) + offloaded)
                   / self.world)

    def gpu(self) -> int:
        """GPU bytes per rank, DeepSpeed's rounding."""
        return self.params * sum(self.full.values()) + int(self.params * sum(self.sharded.values()) / self.world) \
            + self.gathered

    def host_rank(self) -> int:
        """A CPU rank's bytes: its GPU-rank states and its share of the offloaded ones. Offloading the
        optimizer on a CPU rank copies its fp32 gradient partition once more (measured at ZeRO-3,
        bf16, 2 ranks: 2 bytes a parameter more per rank than without offload)."""
        copy = 4 if "optimizer" in self.offloaded else 0
        return self.gpu() + int(self.params * (sum(self.offloaded.values()) + copy) / self.world)

    def cpu_node(self, gpus_per_node: int) -> int:
        """Host bytes per node: construction (fp32, every rank) or the offloaded partitions, whichever is larger."""
        construction = 4 * gpus_per_node * self.built
        offloaded = self.params * sum(self.offloaded.values()) / self.nodes
        return int(max(construction, offloaded) * CPU_BUFFER_FACTOR)


def model_states(w: Workload, s: Setting) -> ModelStates:
    """Where each model state lives under setting ``s`` (see the module docstring)."""
    p = w.p
    optimizer = 16 if w.precision != "fp32" or s.zero_stage > 0 else 8  # fp32 grads + master + Adam; fp32 torch AdamW: Adam
    grads_sharded = s.zero_stage >= 2
    states = {"params": p, "gradients": p, "optimizer": optimizer}
    if s.zero_stage == 3:
        states["gradients"] = 0  # reduced straight into the fp32 partition
    full = {"params": p if s.zero_stage < 3 else 0, "gradients": 0 if grads_sharded else p,
            "optimizer": optimizer if s.zero_stage == 0 else 0}
    sharded = {k: v - full[k] for k, v in states.items()}
    offloaded: dict[str, int] = {}
    if s.offload_optimizer:
        offloaded["optimizer"] = sharded.pop("optimizer")
        sharded.pop("gradients")  # reduced into the host's fp32 gradients
    if s.offload_param:
        offloaded["params"] = sharded.pop("params")
    gathered = 2 * p * w.shape.largest_layer_params if s.zero_stage == 3 else 0
    built = w.shape.largest_layer_params if s.zero_stage == 3 else w.shape.params  # zero.Init under ZeRO-3
    return ModelStates(w.shape.params, w.world, w.nodes, full, sharded, offloaded, gathered, built)


def _layer(w: Workload, b: int, s_q: int, s_kv: int, linear: int) -> float:
    """Bytes one attention block plus ``linear`` * s*b*h (16-bit units) keeps, in training precision."""
    h, a = w.shape.hidden, w.shape.heads
    scores = 5 * a * s_q * s_kv * b * w.p / 2 if w.attention in _DENSE_SCORES else 4 * a * s_q * b
    return linear * s_q * b * h * w.p / 2 + scores


def activations(w: Workload, s: Setting, b: int) -> int:
    """Activation bytes of one micro batch of ``b`` rows kept for backward (module docstring)."""
    seq, shape = w.seq_len, w.shape
    enc = _layer(w, b, seq, seq, 34)
    dec = enc + _layer(w, b, seq, seq, 13) if shape.arch == "t5" else 0  # + cross-attention
    layers = shape.layers + shape.decoder_layers
    if s.checkpointing:
        kept = layers * seq * b * shape.hidden * w.p + max(enc, dec)
    else:
        kept = shape.layers * enc + shape.decoder_layers * dec
    masks = (3 if shape.arch == "t5" else 1) * b * seq * seq * w.p if w.attention in _DENSE_MASK else 0
    encoder_out = seq * b * shape.hidden * w.p if shape.arch == "t5" else 0
    return int(kept + masks + encoder_out)


def loss_bytes(w: Workload, s: Setting, b: int) -> int:
    """Logits and loss of ``b`` rows on a GPU, every token a target: the fused loss's chunk (sized as the kernel
    sizes it on a GPU) and its fp32 gradients, or the unfused loss's whole logits."""
    n, vocab, h = b * w.seq_len, w.shape.vocab, w.shape.hidden
    if s.fused_loss:
        return chunk_rows(n, vocab, h, None, w.device) * vocab * 4 + 4 * n * h + 4 * vocab * h
    upcast = 4 if w.p != 4 else 0
    return n * vocab * (w.p + upcast + 4 + 4)  # logits, fp32 copy, log-softmax, gradient


def reused_bytes(w: Workload, s: Setting) -> int:
    """ZeRO-3's parameters kept gathered for their reuse (module docstring), beyond the gathered layer."""
    if s.zero_stage != 3:
        return 0
    kept = min(w.shape.params, w.reuse_distance // 2)
    return max(kept - w.shape.largest_layer_params, 0) * w.p


def bucket_bytes(w: Workload, s: Setting) -> int:
    if s.zero_stage == 0:
        return 0
    prefetch = min(w.prefetch_bucket, w.shape.params) if s.zero_stage == 3 else 0
    return (min(w.reduce_bucket, w.shape.params) + prefetch) * w.p


@dataclass(frozen=True)
class Estimate:
    """One setting at one micro batch: bytes per rank by part, and host bytes per node."""

    setting: Setting
    micro_batch: int
    params: int
    gradients: int
    optimizer: int
    gathered: int
    reused: int
    activations: int
    loss: int
    buckets: int
    overhead: int
    total: int
    cpu_node: int


def estimate(w: Workload, s: Setting, b: int) -> Estimate:
    states = model_states(w, s)
    parts = dict(reused=reused_bytes(w, s), activations=activations(w, s, b), loss=loss_bytes(w, s, b),
                 buckets=bucket_bytes(w, s))
    host = w.device == "cpu"
    dynamic = (states.host_rank() if host else states.gpu()) + sum(parts.values())
    overhead = CPU_RANK_BYTES if host else CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * dynamic)
    total = dynamic + overhead
    return Estimate(setting=s, micro_batch=b, params=states.component("params", host),
                    gradients=states.component("gradients", host), optimizer=states.component("optimizer", host),
                    gathered=states.gathered, overhead=overhead, total=total,
                    cpu_node=total * w.gpus_per_node if host else states.cpu_node(w.gpus_per_node), **parts)


def max_micro_batch(w: Workload, s: Setting, memory: int) -> int:
    """The largest micro batch (up to :data:`MAX_MICRO_BATCH`) whose estimate fits ``memory``; 0 if none."""
    fits = lambda b: estimate(w, s, b).total <= memory  # noqa: E731  (the total grows with b)
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= MAX_MICRO_BATCH and fits(high):
        low, high = high, 2 * high
    high = min(high, MAX_MICRO_BATCH + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def alternatives(configured: Setting) -> list[Setting]:
    """The configured setting first, then every ZeRO 1/2/3 x offload x recompute x loss choice."""
    out = [configured]
    for stage, ckpt, fused in itertools.product((1, 2, 3), (False, True), (True, False)):
        for opt, param in ((False, False), (True, False), (True, True)):
            setting = Setting(stage, opt, param, ckpt, fused)
            if (stage == 3 or not param) and setting not in out:
                out.append(setting)
    return out


def _changes(a: Setting, b: Setting) -> int:
    return sum(x != y for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b)))


def nearest_fit(w: Workload, configured: Setting, micro_batch: int, memory: int) -> tuple[Setting, int] | None:
    """The setting that fits ``memory`` with the fewest changes (then the smallest total) at
    ``micro_batch``; failing that, the one that fits the largest smaller micro batch. None: nothing fits."""
    sized = [(s, max_micro_batch(w, s, memory)) for s in alternatives(configured)]
    as_is = [s for s, most in sized if most >= micro_batch]
    if as_is:
        best = min(as_is, key=lambda s: (_changes(s, configured), estimate(w, s, micro_batch).total))
        return best, micro_batch
    smaller = [(s, most) for s, most in sized if most >= 1]
    if not smaller:
        return None
    return min(smaller, key=lambda item: (_changes(item[0], configured), -item[1]))


# --------------------------------------------------------------------------- from a run config


def configured_setting(cfg: Config) -> Setting:
    """The setting ``cfg`` trains with on GPUs (``model.fused_loss: auto`` is fused there)."""
    return Setting(cfg.deepspeed.zero_stage, cfg.deepspeed.offload_optimizer, cfg.deepspeed.offload_param,
                   cfg.model.gradient_checkpointing, cfg.model.fused_loss is not False)


def check_world(cfg: Config, gpus_per_node: int | None, nodes: int | None) -> tuple[int, int]:
    """``(gpus per node, nodes)``: the flags, else the config's ``launch`` keys; a ConfigError naming the
    value when they are impossible or contradict the config."""
    launch = cfg.launch
    gpus = launch.nproc_per_node if gpus_per_node is None else gpus_per_node
    nodes = launch.nnodes if nodes is None else nodes
    if gpus_per_node is None and gpus == 0:
        raise ConfigError("launch.nproc_per_node is 0 (one rank per GPU of the node): give --gpus-per-node")
    if gpus < 1 or nodes < 1:
        raise ConfigError(f"--gpus-per-node {gpus} x --nodes {nodes}: both must be at least 1")
    if launch.nproc_per_node not in (0, gpus):
        raise ConfigError(f"--gpus-per-node {gpus} contradicts launch.nproc_per_node={launch.nproc_per_node} "
                          f"(plan for {gpus} with the override launch.nproc_per_node={gpus})")
    batch = cfg.deepspeed.extra.get("train_batch_size")
    per_step = cfg.train.micro_batch_size * cfg.train.grad_accum
    if batch is not None and batch != per_step * gpus * nodes:
        raise ConfigError(f"deepspeed.extra.train_batch_size={batch} needs {batch / per_step:g} ranks "
                          f"(train.micro_batch_size x train.grad_accum = {per_step}), not {gpus} x {nodes} = {gpus * nodes}")
    return gpus, nodes


def workload(cfg: Config, gpus_per_node: int, nodes: int, device: str = "cuda") -> Workload:
    """The :class:`Workload` of ``cfg`` on ``nodes`` x ``gpus_per_node`` ranks on ``device`` (cuda, cpu)."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    from flanforge.launcher.training.engine import deepspeed_config
    from flanforge.model.load import choose_attention

    zero = DeepSpeedZeroConfig(**deepspeed_config(cfg, gpus_per_node * nodes)["zero_optimization"])
    precision = cfg.train.precision
    if precision == "auto":  # what training_precision resolves it to: bf16 on the GPUs planned for, fp32 on CPUs
        precision = "fp32" if device == "cpu" else "bf16"
    return Workload(shape=model_shape(cfg.model), precision=precision, seq_len=cfg.mixture.seq_len,
                    attention=choose_attention(cfg.model, device_type=device), gpus_per_node=gpus_per_node,
                    nodes=nodes, reduce_bucket=zero.reduce_bucket_size, prefetch_bucket=zero.prefetch_bucket_size,
                    reuse_distance=zero.max_reuse_distance, device=device)


def breakdown(e: Estimate) -> str:
    """One line: the total and its parts."""
    parts = ("params", "gradients", "optimizer", "gathered", "reused", "activations", "loss", "buckets", "overhead")
    shown = ", ".join(f"{name} {format_bytes(getattr(e, name))}" for name in parts if getattr(e, name))
    return f"{format_bytes(e.total)} ({shown})"


def suggestion(found: tuple[Setting, int] | None, cfg: Config) -> str:
    """The overrides that turn ``cfg`` into the ``found`` setting (and micro batch)."""
    if found is None:
        return "no setting fits at micro batch 1"
    setting, micro_batch = found
    now = configured_setting(cfg).overrides()
    changed = [f"{k}={str(v).lower()}" for k, v in setting.overrides().items() if now[k] != v]
    if micro_batch != cfg.train.micro_batch_size:
        changed.append(f"train.micro_batch_size={micro_batch}")
    return " ".join(changed)


def check_fits(cfg: Config, gpus_per_node: int) -> None:
    """Train's pre-flight: a UserError with the breakdown and the nearest fitting setting when the
    configured setting is predicted not to fit ``launch.gpu_memory``."""
    memory = parse_bytes(cfg.launch.gpu_memory, "launch.gpu_memory")
    w = workload(cfg, gpus_per_node, cfg.launch.nnodes)
    configured, micro_batch = configured_setting(cfg), cfg.train.micro_batch_size
    predicted = estimate(w, configured, micro_batch)
    if predicted.total <= memory:
        return
    found = nearest_fit(w, configured, micro_batch, memory)
    raise UserError(f"launch.gpu_memory={cfg.launch.gpu_memory}: flanforge plan predicts {breakdown(predicted)} "
                    f"per rank for {configured.label()} at micro batch {micro_batch}; nearest that fits: "
                    f"{suggestion(found, cfg)} (or set launch.ignore_memory_plan=true to train anyway)")
