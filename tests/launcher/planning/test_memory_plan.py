"""The memory plan: model states equal DeepSpeed's own estimators, activations and loss equal hand
counts, the fit decision on both sides of its boundary, and the world and model checks."""

import dataclasses
import itertools

import pytest
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs, model_to_params
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
from transformers import LlamaForCausalLM, T5ForConditionalGeneration

from flanforge.errors import ConfigError, UserError
from flanforge.launcher.config import load_config
from flanforge.launcher.planning import memory_plan as mp
from flanforge.launcher.planning.model_shape import ModelShape, model_shape
from flanforge.model.load import hf_config_of

TINY = ModelShape(arch="decoder", params=4_188_416, largest_layer_params=512_000, hidden=256, heads=4, layers=4,
                  decoder_layers=0, vocab=2000)
BIG = dataclasses.replace(TINY, params=6_738_415_616, largest_layer_params=131_072_000)  # Llama-2-7B's counts


def workload(shape=TINY, precision="bf16", attention="flex", gpus=8, nodes=1, seq=128):
    return mp.Workload(shape=shape, precision=precision, seq_len=seq, attention=attention, gpus_per_node=gpus,
                       nodes=nodes, reduce_bucket=500_000_000, prefetch_bucket=50_000_000)


def setting(stage, opt=False, param=False, ckpt=False, fused=True):
    return mp.Setting(stage, opt, param, ckpt, fused)


@pytest.mark.parametrize("config", ["configs/demo.yaml", "configs/demo_t5.yaml"])
def test_model_shape_counts_the_built_model_as_deepspeed_does(config):
    """Parameters and the largest layer from the meta build equal DeepSpeed's count of the real model."""
    cfg = load_config(config).model
    shape = model_shape(cfg)
    real = (LlamaForCausalLM if cfg.arch == "decoder" else T5ForConditionalGeneration)(
        hf_config_of(cfg, vocab_size=cfg.vocab_size))
    assert (shape.params, shape.largest_layer_params) == model_to_params(real)
    assert shape.vocab == cfg.vocab_size


@pytest.mark.parametrize("shape", [TINY, BIG])
@pytest.mark.parametrize("gpus,nodes", [(1, 1), (2, 1), (8, 1), (8, 4), (3, 5)])
def test_zero2_model_states_equal_deepspeeds_estimator(shape, gpus, nodes):
    w = workload(shape, gpus=gpus, nodes=nodes)
    for offload in (False, True):
        states = mp.model_states(w, setting(2, opt=offload))
        cpu, gpu = estimate_zero2_model_states_mem_needs(shape.params, gpus, nodes, cpu_offload=offload)
        assert states.gpu() == gpu
        if nodes == 1:  # DeepSpeed's offload figure counts 4 bytes for every GPU of the job on each node
            assert states.cpu_node(gpus) == cpu


@pytest.mark.parametrize("shape", [TINY, BIG])
@pytest.mark.parametrize("gpus,nodes", [(1, 1), (2, 1), (8, 1), (8, 4), (3, 5)])
def test_zero3_model_states_equal_deepspeeds_estimator(shape, gpus, nodes):
    """flanforge builds ZeRO-3 models partitioned (zero.Init): DeepSpeed's zero_init=True. With offload,
    DeepSpeed counts only the offloaded states on the host; the plan also counts the layer each rank
    gathers while building, which is more only where one layer is a large share of the model."""
    w = workload(shape, gpus=gpus, nodes=nodes)
    for opt, param in ((False, False), (True, False), (True, True)):
        states = mp.model_states(w, setting(3, opt=opt, param=param))
        cpu, gpu, largest = estimate_zero3_model_states_mem_needs(
            shape.params, shape.largest_layer_params, gpus, nodes, cpu_offload=opt, cpu_offload_params=param,
            zero_init=True)
        construction = int(4 * gpus * shape.largest_layer_params * mp.CPU_BUFFER_FACTOR)
        assert (states.gpu(), states.gathered) == (gpu, largest)
        assert states.cpu_node(gpus) == max(cpu, construction)
        if not opt:
            assert cpu == construction


def test_zero1_keeps_whole_gradients_and_fp32_keeps_4_byte_params():
    p, n = BIG.params, 8
    assert mp.model_states(workload(BIG), setting(1)).gpu() == 2 * p + 2 * p + int(16 * p / n)
    assert mp.model_states(workload(BIG, "fp32"), setting(2)).gpu() == 4 * p + int(20 * p / n)
    assert mp.model_states(workload(BIG, "fp32"), setting(0)).gpu() == 16 * p  # torch AdamW: no master copy


def test_activations_equal_hand_counts_for_the_tiny_decoder():
    s, b, h, a, layers = 128, 4, 256, 4, 4
    sbh = s * b * h
    eager = layers * sbh * (34 + 5 * a * s / h) + b * s * s * 2  # Korthikanti eq. 1, + one dense bf16 mask
    flex = layers * (34 * sbh + 4 * a * s * b)  # no scores kept, an fp32 log-sum-exp
    recompute = layers * 2 * sbh + (34 * sbh + 4 * a * s * b)  # the layer inputs + one layer recomputed
    assert mp.activations(workload(attention="eager_mask"), setting(2), b) == eager == 23_199_744
    assert mp.activations(workload(attention="flex"), setting(2), b) == flex
    assert mp.activations(workload(attention="flex"), setting(2, ckpt=True), b) == recompute
    assert mp.activations(workload(precision="fp32", attention="segments"), setting(2), b) == layers * (
        68 * sbh + 4 * a * s * b)


def test_t5_activations_add_cross_attention_and_the_encoder_output():
    t5 = dataclasses.replace(TINY, arch="t5", layers=3, decoder_layers=3)
    s, b, h, a = 128, 2, 256, 4
    sbh, lse = s * b * h, 4 * a * s * b
    encoder_layer, decoder_layer = 34 * sbh + lse, 34 * sbh + lse + 13 * sbh + lse
    assert mp.activations(workload(t5, attention="segments"), setting(2), b) == 3 * encoder_layer + 3 * decoder_layer + 2 * sbh


def test_loss_fused_chunk_vs_unfused_logits():
    n, v, h = 4 * 128, 2000, 256
    w = workload()
    assert mp.loss_bytes(w, setting(2, fused=False), 4) == n * v * (2 + 4 + 4 + 4)
    chunk = 64  # the kernel's GPU sizing: ceil(V / H) = 8 chunks of 512 / 8 rows
    assert mp.loss_bytes(w, setting(2, fused=True), 4) == chunk * v * 4 + 4 * n * h + 4 * v * h


@pytest.mark.parametrize("s", [setting(2), setting(3, ckpt=True), setting(1, opt=True, fused=False)])
def test_fit_decision_on_both_sides_of_the_boundary(s):
    """The largest micro batch that fits a memory is the last before the estimate exceeds it: the estimate
    never falls as the batch grows, and stays level while the optimizer step is the largest phase."""
    w = workload(BIG, gpus=8, seq=4096)
    for b in (1, 3, 8, 40):
        total = mp.estimate(w, s, b).total
        most = mp.max_micro_batch(w, s, total)
        assert most >= b and mp.estimate(w, s, most).total <= total < mp.estimate(w, s, most + 1).total
        below = mp.max_micro_batch(w, s, total - 1)
        assert below < b and (below == 0 or mp.estimate(w, s, below).total <= total - 1)
    level = [mp.estimate(w, setting(3, ckpt=True), b).total for b in (1, 2)]
    assert level[0] == level[1]  # ZeRO-3's step (fp32 temporaries of a 1e9-element sub-group) outweighs both


def _phases(e) -> int:
    return max(e.reused + e.activations + e.loss + e.gather_copy, e.reduce_copy, e.step)


def test_the_estimate_adds_up():
    e = mp.estimate(workload(BIG), setting(3, opt=True), 2)
    dynamic = e.params + e.gradients + e.optimizer + e.gathered + e.buckets + _phases(e)
    assert abs(e.total - dynamic - e.overhead) <= 2  # the states' parts are rounded one by one
    assert e.overhead == mp.CUDA_CONTEXT_BYTES + int(mp.ALLOCATOR_SLACK * (e.total - e.overhead))


def test_the_optimizer_steps_temporaries_by_device_stage_and_offload():
    p = BIG.params
    gpu, cpu = workload(BIG, gpus=8), dataclasses.replace(workload(BIG, gpus=8), device="cpu")
    assert mp.step_bytes(gpu, setting(2)) == 4 * (p // 8)  # torch's multi-tensor AdamW: one fp32 temporary
    assert mp.step_bytes(cpu, setting(2)) == 8 * (p // 8)  # its single-tensor loop: two at once
    assert mp.step_bytes(gpu, setting(2, opt=True)) == 0  # DeepSpeed's CPU Adam, none on the GPU
    assert mp.step_bytes(cpu, setting(2, opt=True)) == 8 * (p // 8)  # on a CPU rank torch's AdamW steps it
    sub = dataclasses.replace(cpu, sub_group=10**7)  # ZeRO-3 steps one sub-group at a time, with its fp32 gradient
    assert mp.step_bytes(sub, setting(3)) == (8 + 4) * 10**7
    assert mp.step_bytes(sub, setting(3, opt=True)) == 8 * 10**7
    assert mp.step_bytes(cpu, setting(3)) == 12 * (p // 8) and mp.step_bytes(gpu, setting(3)) == 8 * (p // 8)


def test_gloos_copies_on_cpu_ranks_under_zero3():
    cpu = dataclasses.replace(workload(BIG, gpus=2), device="cpu", reduce_bucket=10**8, prefetch_bucket=10**7)
    assert mp.collective_copies(cpu, setting(3)) == (10**7 * 2, 3 * 10**8 * 4)  # bf16 gradients reduced in fp32
    assert mp.collective_copies(dataclasses.replace(cpu, grad_bytes=2), setting(3)) == (10**7 * 2, 2 * 10**8 * 2)
    small = dataclasses.replace(cpu, shape=TINY, precision="fp32")  # buckets larger than the model: the model's size
    assert mp.collective_copies(small, setting(3)) == (TINY.params * 4, 2 * TINY.params * 4)
    assert mp.collective_copies(cpu, setting(2)) == (0, 0)
    assert mp.collective_copies(dataclasses.replace(cpu, device="cuda"), setting(3)) == (0, 0)  # NCCL: in place


def test_zero3_gradient_partition_in_grad_dtype_and_fp32_without_a_master_copy():
    p, n = BIG.params, 2

    def partitioned(w, s):  # bytes per rank less the gathered layer
        states = mp.model_states(w, s)
        return (states.host_rank() if w.device == "cpu" else states.gpu()) - states.gathered

    bf16 = workload(BIG, gpus=n)
    assert partitioned(bf16, setting(3)) == int(18 * p / n)  # DeepSpeed's estimator: 2 + 16
    half = dataclasses.replace(bf16, grad_bytes=2)
    assert partitioned(half, setting(3)) == int(16 * p / n)  # the partition in bf16: 2 bytes fewer
    fp32 = workload(BIG, precision="fp32", gpus=n)
    assert partitioned(fp32, setting(3)) == int(16 * p / n)  # 4 + 4 + 8: the parameters are the master
    host = dataclasses.replace(half, device="cpu")  # offloaded on a CPU rank: + the optimizer's fp32 gradients
    assert partitioned(host, setting(3, opt=True, param=True)) == int(20 * p / n)


def test_zero3_keeps_parameters_gathered_within_the_reuse_distance():
    """A model smaller than half of stage3_max_reuse_distance stays gathered whole after the forward; a larger
    one keeps half the distance's worth; only ZeRO-3 gathers (hand counts, bf16: 2 bytes an element)."""
    small = dataclasses.replace(workload(TINY), reuse_distance=10**9)
    assert mp.reused_bytes(small, setting(3)) == 2 * (TINY.params - TINY.largest_layer_params)
    big = dataclasses.replace(workload(BIG), reuse_distance=4 * 10**8)
    assert BIG.params > 2 * 10**8 > BIG.largest_layer_params
    assert mp.reused_bytes(big, setting(3)) == 2 * (2 * 10**8 - BIG.largest_layer_params)
    assert mp.reused_bytes(small, setting(2)) == 0
    none = dataclasses.replace(workload(BIG), reuse_distance=0)
    assert mp.reused_bytes(none, setting(3)) == 0


def test_nearest_fit_changes_the_fewest_choices():
    w, configured = workload(BIG, gpus=8, seq=2048), setting(2, ckpt=False)
    need = mp.estimate(w, configured, 4).total
    assert mp.nearest_fit(w, configured, 4, need) == (configured, 4)
    found, micro_batch = mp.nearest_fit(w, configured, 4, need - 1)
    assert micro_batch == 4 and mp.estimate(w, found, 4).total <= need - 1
    changes = lambda s: sum(x != y for x, y in zip(dataclasses.astuple(s), dataclasses.astuple(configured)))  # noqa: E731
    assert changes(found) == 1
    assert mp.nearest_fit(w, configured, 4, 10) is None


def _demo(*overrides):
    return load_config("configs/demo.yaml", list(overrides))


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_check_fits_refuses_with_the_breakdown_and_the_nearest_setting(device):
    cfg = _demo()
    need = mp.estimate(mp.workload(cfg, 2, 1, device), mp.configured_setting(cfg), cfg.train.micro_batch_size).total
    mp.check_fits(cfg, 2, device, need, "the source")  # exactly enough
    kind = "GPU" if device == "cuda" else "CPU"
    with pytest.raises(UserError, match=rf"^the source: flanforge plan predicts .* activations .* per {kind} rank .*"
                                        rf"nearest that fits: \S+="):
        mp.check_fits(cfg, 2, device, need - 1, "the source")


@pytest.mark.parametrize("overrides,gpus,nodes,message", [
    ((), None, None, r"launch.nproc_per_node is 0"),
    ((), 0, 1, r"--gpus-per-node 0 x --nodes 1"),
    (("launch.nproc_per_node=2",), 4, None, r"--gpus-per-node 4 contradicts launch.nproc_per_node=2"),
    (("deepspeed.extra.train_batch_size=64",), 2, 1, r"train_batch_size=64 needs 16 ranks"),
])
def test_impossible_world_sizes_name_the_value(overrides, gpus, nodes, message):
    with pytest.raises(ConfigError, match=message):
        mp.check_world(_demo("launch.nproc_per_node=0", *overrides), gpus, nodes)


def test_a_model_that_cannot_be_built_names_the_value():
    with pytest.raises(ConfigError, match=r"model.hf_config=.*'num_attention_heads': 3.* cannot be built: .*multiple"):
        model_shape(_demo("model.hf_config.num_attention_heads=3").model)


def test_alternatives_cover_every_choice_once():
    configured = setting(2, ckpt=True)
    found = mp.alternatives(configured)
    assert found[0] == configured and len(found) == len(set(found)) == 3 * 2 * 2 * 2 + 2 * 2
    assert all(s.zero_stage == 3 or not s.offload_param for s in found)
    assert {(s.zero_stage, s.checkpointing, s.fused_loss) for s in found} == set(
        itertools.product((1, 2, 3), (False, True), (True, False)))


def test_a_cpu_rank_holds_its_offloaded_states_and_the_framework_not_a_cuda_context():
    gpu = workload(BIG, precision="fp32", gpus=2)
    cpu = dataclasses.replace(gpu, device="cpu")
    p, n = BIG.params, 2
    for opt in (False, True):  # on a CPU rank offloading moves nothing out of the rank's memory
        e = mp.estimate(cpu, setting(2, opt=opt), 1)
        assert e.optimizer == int(16 * p / n) and e.params == 4 * p
        assert e.overhead == mp.CPU_RANK_BYTES
        # fp32 gradient partition (4/n) and optimizer states (16/n); offloaded, the gradients twice
        states = 4 * p + int(20 * p / n)
        assert e.total == states + e.buckets + e.overhead + _phases(e)
        assert e.cpu_node == 2 * e.total + mp.CPU_LAUNCHER_BYTES
    g = mp.estimate(gpu, setting(2, opt=True), 1)
    assert g.optimizer == 0 and g.overhead > mp.CUDA_CONTEXT_BYTES


def test_cpu_ranks_phases_overlap_in_glibcs_heap_and_not_with_a_fixed_mmap_threshold():
    cpu = dataclasses.replace(workload(TINY, precision="fp32", gpus=2), device="cpu")
    lean, heap = dataclasses.replace(cpu, allocator="mmap"), dataclasses.replace(cpu, allocator="glibc")
    s = setting(3)
    a, b = mp.estimate(lean, s, 4), mp.estimate(heap, s, 4)
    states = a.params + a.gradients + a.optimizer + a.gathered
    forward_backward = a.reused + a.activations + a.loss + a.gather_copy
    assert a.total == states + a.buckets + max(forward_backward, a.reduce_copy, a.step) + mp.CPU_RANK_BYTES
    dynamic = states + b.buckets + forward_backward + max(b.reduce_copy, b.step)  # the heap keeps the first phase
    assert b.total == dynamic + mp.CPU_RANK_BYTES + int(mp.CPU_ALLOCATOR_SLACK * dynamic)
    assert b.total > a.total


@pytest.mark.parametrize("overrides,device,allocator", [
    ((), "cuda", "caching"), (("launch.mmap_threshold=1MiB",), "cuda", "caching"),
    ((), "cpu", "glibc"), (("launch.mmap_threshold=1MiB",), "cpu", "mmap"),
])
def test_the_workload_knows_the_ranks_allocator(overrides, device, allocator):
    assert mp.workload(_demo(*overrides), 2, 1, device).allocator == allocator


def test_the_plan_counts_the_tokenizers_vocabulary_once_it_exists(tmp_path):
    """A fresh run trains its tokenizer (model.vocab_size is an upper bound); with model.tokenizer_path,
    or the run directory's own (a resumed run), the plan counts the vocabulary the model will have."""
    from flanforge.model.tokenizer import train_tokenizer

    texts = [f"task {i}: the quick brown fox jumps over the lazy dog {i * 7}" for i in range(300)]
    tokenizer = train_tokenizer(texts, tmp_path / "tok", 300)
    fresh = _demo(f"output_dir={tmp_path / 'run'}")
    assert mp.known_vocabulary(fresh) is None and mp.workload(fresh, 2, 1).shape.vocab == fresh.model.vocab_size
    given = _demo(f"output_dir={tmp_path / 'run'}", f"model.tokenizer_path={tmp_path / 'tok'}")
    assert mp.workload(given, 2, 1).shape.vocab == tokenizer.vocab_size < fresh.model.vocab_size
    train_tokenizer(texts, tmp_path / "run" / "tokenizer", 300)  # the run's own, as a resumed run has it
    assert mp.known_vocabulary(fresh) == tokenizer.vocab_size
    (tmp_path / "run" / "tokenizer" / "spiece.model").write_bytes(b"not a model")  # damaged: the run reports it
    assert mp.known_vocabulary(fresh) is None
