"""Memory per rank of a training setting, predicted before any rank starts (``flanforge plan``, train's pre-flight).

Per GPU rank, in bytes (``p``: 2 for bf16/fp16 training, 4 for fp32; ``P`` parameters, ``N`` ranks):

- **model states**, as DeepSpeed counts them (``estimate_zero2_model_states_mem_needs``,
  ``estimate_zero3_model_states_mem_needs``; the unit tests check the equality): ``p``-byte
  parameters and gradients, and for the optimizer fp32 gradients, fp32 master weights and Adam's
  two moments (4 + 4 + 8 bytes). ZeRO-1 partitions the optimizer states over ``N``, ZeRO-2 the
  gradients too, ZeRO-3 the parameters too (it reduces gradients straight into their partition,
  and gathers one layer at a time: ``2p`` bytes per parameter of the largest layer). Beyond the
  estimator, ZeRO-3's gradient partition is in ``deepspeed.grad_dtype`` (``g`` bytes, 4 by
  default: then the figures are DeepSpeed's), and an fp32 run without offload keeps no separate
  master copy (DeepSpeed steps the fp32 parameter partition itself).
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
- **the optimizer step**: AdamW's temporaries over the largest tensor one step call sees (ZeRO-3: an
  optimizer sub-group, ``sub_group_size`` elements of the partition at most; else the partition):
  one fp32 copy for torch's multi-tensor AdamW on a GPU, two for its single-tensor loop on a CPU
  (``denom = exp_avg_sq.sqrt() / c``), and ZeRO-3 without offload the sub-group's fp32 gradient.
  DeepSpeed's CPU Adam (offload from GPUs) makes none on the GPU.
- **collectives' copies on CPU ranks** (gloo, ZeRO-3): ``all_gather_into_tensor`` gathers into a
  temporary as large as its output (one prefetch bucket), and the gradient reduction flattens the
  bucket (``reduce_scatter_coalesced``) and gloo's ``reduce_scatter`` clones its input: two copies of
  the reduce bucket, three when the gradients are converted to ``g`` bytes first. Measured with
  ``torch.profiler`` on 2 CPU ranks (a 76.6M-parameter decoder, fp32): the first is the peak of the
  forward, the second of the backward.
- **overhead**: :data:`CUDA_CONTEXT_BYTES` and :data:`ALLOCATOR_SLACK` of the rest.

The forward and backward (activations, loss, reused parameters, the gather's copy), the gradient
reduction (its copies) and the optimizer step (its temporaries) do not overlap: a rank's peak is its
states, buckets and overhead plus the largest of the three. Except on CPU ranks with glibc's default
allocator: the forward and backward's tensors (below its mmap threshold, which rises to 32 MiB) are
freed into its heap, which gives nothing back while anything above them lives, so the reduction or
the step comes on top of them (then the largest of those two).

CPU ranks (``flanforge plan --device cpu``, ``launch.device: cpu``): the host is the device, so a
rank holds its model states, offloaded ones included, its activations (the CPU's attention), loss
and buckets, plus :data:`CPU_RANK_BYTES` and, with glibc's default allocator, :data:`CPU_ALLOCATOR_SLACK`
of the rest instead of the CUDA context and the caching allocator's slack; the node holds its ranks' sum
and :data:`CPU_LAUNCHER_BYTES`.

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
from flanforge.sizes import format_bytes
from flanforge.launcher.planning.model_shape import ModelShape, model_shape

CUDA_CONTEXT_BYTES = 512 * 2**20
"""The CUDA context and torch's kernels: about 0.5 GiB on Hopper with CUDA 12's lazy module loading."""
ALLOCATOR_SLACK = 0.10
"""Fragmentation of the caching allocator, as a share of everything else."""
CPU_BUFFER_FACTOR = 1.5
"""DeepSpeed's ``additional_buffer_factor`` for host memory."""
CPU_ALLOCATOR_SLACK = 0.106
"""Freed memory glibc's default allocator keeps in a CPU rank's heap besides the phases' (module docstring),
as a share of what the plan counts; none with ``launch.mmap_threshold`` set. Fitted with
:data:`CPU_RANK_BYTES` by least squares to 18 measured 2-rank runs (``benchmarks/plan_vs_measured.py``,
then ``--fit`` on its output)."""
CPU_RANK_BYTES = 579 * 2**20
"""A CPU training rank's host memory besides what the plan counts: Python, torch, DeepSpeed, transformers,
gloo, the data stream and tokenizer, TensorBoard. Fitted with :data:`CPU_ALLOCATOR_SLACK` (above)."""
CPU_LAUNCHER_BYTES = 700 * 2**20
"""A CPU node's processes besides its ranks: ``flanforge train``'s launcher and DeepSpeed's runner (0.68 GiB
measured beside the ranks of ``benchmarks/train_1b_cpu.py``)."""
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
    grad_bytes: int = 4
    """``g``: bytes of an element of ZeRO-3's gradient partition (``deepspeed.grad_dtype``; fp32 runs: 4)."""
    allocator: str = "caching"
    """``caching`` (torch's on GPUs), ``glibc`` (CPU ranks, glibc's default: freed blocks stay in its heap)
    or ``mmap`` (CPU ranks with ``launch.mmap_threshold``: freed tensors go back to the OS)."""
    sub_group: int = 1_000_000_000
    """ZeRO-3's ``sub_group_size``: the most partition elements one optimizer step call updates."""

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
        optimizer on a CPU rank keeps the gradient partition twice: the reduced one and the optimizer's
        fp32 copy (measured at ZeRO-3, bf16, 2 ranks: 10.0 bytes a parameter per rank with bf16
        gradients, ``g`` = 2, against 8 without offload)."""
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
        states["gradients"] = 0  # reduced straight into the partition: the optimizer's share
        shared_master = w.precision == "fp32" and not s.offload_optimizer
        states["optimizer"] = 8 + w.grad_bytes + (0 if shared_master else 4)
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


def step_bytes(w: Workload, s: Setting) -> int:
    """The optimizer step's temporaries (module docstring)."""
    elements = w.shape.params if s.zero_stage == 0 else w.shape.params // w.world
    if s.zero_stage == 3:
        elements = min(elements, w.sub_group)
    host = w.device == "cpu"
    adam = 0 if s.offload_optimizer and not host else (8 if host else 4) * elements
    fp32_gradient = 4 * elements if s.zero_stage == 3 and not s.offload_optimizer else 0
    return adam + fp32_gradient


def collective_copies(w: Workload, s: Setting) -> tuple[int, int]:
    """(the all-gather's, the gradient reduction's) copies on CPU ranks under ZeRO-3 (module docstring)."""
    if w.device != "cpu" or s.zero_stage != 3:
        return 0, 0
    converted = w.grad_bytes != w.p
    gather = min(w.prefetch_bucket, w.shape.params) * w.p
    return gather, (2 + converted) * min(w.reduce_bucket, w.shape.params) * w.grad_bytes


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
    gather_copy: int
    reduce_copy: int
    step: int
    overhead: int
    total: int
    cpu_node: int


def estimate(w: Workload, s: Setting, b: int) -> Estimate:
    states = model_states(w, s)
    gather_copy, reduce_copy = collective_copies(w, s)
    parts = dict(reused=reused_bytes(w, s), activations=activations(w, s, b), loss=loss_bytes(w, s, b),
                 gather_copy=gather_copy, reduce_copy=reduce_copy, step=step_bytes(w, s))
    host = w.device == "cpu"
    forward_backward = parts["reused"] + parts["activations"] + parts["loss"] + gather_copy
    if w.allocator == "glibc":  # the forward and backward's freed blocks are still in the heap at the later phases
        working = forward_backward + max(reduce_copy, parts["step"])
    else:
        working = max(forward_backward, reduce_copy, parts["step"])
    buckets = bucket_bytes(w, s)
    dynamic = (states.host_rank() if host else states.gpu()) + buckets + working
    if host:
        overhead = CPU_RANK_BYTES + (int(CPU_ALLOCATOR_SLACK * dynamic) if w.allocator == "glibc" else 0)
    else:
        overhead = CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * dynamic)
    total = dynamic + overhead
    return Estimate(setting=s, micro_batch=b, params=states.component("params", host),
                    gradients=states.component("gradients", host), optimizer=states.component("optimizer", host),
                    gathered=states.gathered, buckets=buckets, overhead=overhead, total=total,
                    cpu_node=total * w.gpus_per_node + CPU_LAUNCHER_BYTES if host else states.cpu_node(w.gpus_per_node),
                    **parts)


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


def known_vocabulary(cfg: Config) -> int | None:
    """The size of the tokenizer a from-scratch run will use, when it exists before the run:
    ``model.tokenizer_path``'s, or the run directory's own (a resumed run); None when the run trains it
    (``model.vocab_size`` is its upper bound)."""
    from flanforge.launcher.training.rundir import RunDir
    from flanforge.model.paths import load_configured_tokenizer
    from flanforge.model.tokenizer import SPM_FILE, load_tokenizer

    tokenizer = load_configured_tokenizer(cfg.model)
    if tokenizer is None and (RunDir.of(cfg).tokenizer / SPM_FILE).is_file():
        try:
            tokenizer = load_tokenizer(RunDir.of(cfg).tokenizer)
        except (OSError, RuntimeError, ValueError):  # damaged: the run says so when it starts; plan for the bound
            return None
    return None if tokenizer is None else tokenizer.vocab_size


def workload(cfg: Config, gpus_per_node: int, nodes: int, device: str = "cuda") -> Workload:
    """The :class:`Workload` of ``cfg`` on ``nodes`` x ``gpus_per_node`` ranks on ``device`` (cuda, cpu)."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    from flanforge.launcher.training.engine import deepspeed_config
    from flanforge.model.load import choose_attention

    zero = DeepSpeedZeroConfig(**deepspeed_config(cfg, gpus_per_node * nodes)["zero_optimization"])
    precision = cfg.train.precision
    if precision == "auto":  # what training_precision resolves it to: bf16 on the GPUs planned for, fp32 on CPUs
        precision = "fp32" if device == "cpu" else "bf16"
    grad_bytes = 4 if precision == "fp32" else {"fp32": 4, "bf16": 2, "fp16": 2}[cfg.deepspeed.grad_dtype]
    return Workload(shape=model_shape(cfg.model, known_vocabulary(cfg)), precision=precision, seq_len=cfg.mixture.seq_len,
                    attention=choose_attention(cfg.model, device_type=device), gpus_per_node=gpus_per_node,
                    nodes=nodes, reduce_bucket=zero.reduce_bucket_size, prefetch_bucket=zero.prefetch_bucket_size,
                    reuse_distance=zero.max_reuse_distance, device=device, grad_bytes=grad_bytes,
                    sub_group=zero.sub_group_size,
                    allocator="caching" if device == "cuda" else "glibc" if cfg.launch.mmap_threshold is None else "mmap")


def breakdown(e: Estimate) -> str:
    """One line: the total and its parts (the phases' parts are not all at their peak at once)."""
    parts = ("params", "gradients", "optimizer", "gathered", "reused", "activations", "loss", "gather_copy",
             "reduce_copy", "step", "buckets", "overhead")
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


def check_fits(cfg: Config, ranks_per_node: int, device: str, memory: int, source: str) -> None:
    """Train's pre-flight: a UserError with the breakdown and the nearest fitting setting when the
    configured setting is predicted not to fit ``memory`` bytes per rank on ``device`` (``source``: where
    that figure comes from, for the message)."""
    w = workload(cfg, ranks_per_node, cfg.launch.nnodes, device)
    configured, micro_batch = configured_setting(cfg), cfg.train.micro_batch_size
    predicted = estimate(w, configured, micro_batch)
    if predicted.total <= memory:
        return
    found = nearest_fit(w, configured, micro_batch, memory)
    kind = "GPU" if device == "cuda" else "CPU"
    raise UserError(f"{source}: flanforge plan predicts {breakdown(predicted)} per {kind} rank for "
                    f"{configured.label()} at micro batch {micro_batch}, over the {format_bytes(memory)} it has; "
                    f"nearest that fits: {suggestion(found, cfg)} (or set launch.ignore_memory_plan=true to "
                    f"train anyway)")
