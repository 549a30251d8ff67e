"""The mixture stream: exact resume, elastic exactly-once resume, rate changes, frequencies, row contents.

Ranks are simulated in one process by building one stream per rank
(``rank``/``world_size`` arguments); DataLoader workers are simulated by
reading ``worker_batches(w)`` round-robin, as the DataLoader does (one test
checks a real 2-worker DataLoader against that).
"""

import itertools
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch

from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.constants import IGNORE_INDEX
from flanforge.mixtures.streaming.shards import ShardError, prepare
from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.streaming.stream import MixtureStream, build_loader
from flanforge.mixtures.streaming.stream_state import StreamState, merge_state
from flanforge.mixtures.task import Task, TaskError, Template
from flanforge.model.tokenizer import train_tokenizer

WORDS = "apple river stone cloud tiger maple orange silver garden window candle forest pencil rocket".split()
TRAIN_SIZES = {"echo": 13, "shout": 29, "count": 7, "last": 41}  # small: tasks wrap into later epochs


def make_task(name, n):
    def source(split):
        rng = random.Random(f"{name}/{split}")
        size = {"train": n, "exemplars": 4, "validation": 4}[split]
        out = []
        for _ in range(size):
            words = rng.choices(WORDS, k=rng.randint(1, 9))
            answer = {"echo": " ".join(words), "shout": " ".join(words).upper(), "count": str(len(words)), "last": words[-1]}[name]
            out.append({"text": " ".join(words), "answer": answer})
        return out

    templates = tuple(Template(f"{name}{k}", f"{phrase} {{{{ text }}}}") for k, phrase in enumerate(["Do it:", "Task", "Input here"]))
    return Task(name, ("text", "answer"), templates, source)


def make_mixture():
    tasks = {name: make_task(name, n) for name, n in TRAIN_SIZES.items()}
    words = Mixture("words", [(tasks["echo"], Rate.examples()), (tasks["shout"], Rate.examples())])
    numbers = Mixture("numbers", [(tasks["count"], Rate.fixed(1.0)), (tasks["last"], Rate.fixed(3.0))])
    return Mixture("mix", [(words, Rate.fixed(1.0)), (numbers, Rate.fixed(1.0))])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    mix = make_mixture()
    manifest = prepare(mix, root / "shards", records_per_shard=10, progress=False)
    texts = [r["text"] + " " + r["answer"] for t in mix.tasks() for r in t.records("train")]
    tokenizer = train_tokenizer(texts + ["Do it: Task Input here"], root / "tok", vocab_size=400)
    return mix, manifest, tokenizer


def config(**kw):
    args = dict(seed=7, seq_len=48, micro_batch_size=2, block_size=16)
    args.update(kw)
    return StreamConfig(**args)


def make_streams(env, world_size, cfg, state=None, **kw):
    mix, manifest, tokenizer = env
    return [MixtureStream(mix, tokenizer, cfg, manifest, r, world_size, state=state, **kw) for r in range(world_size)]


def rank_batches(stream):
    """A rank's batches in the order its DataLoader yields them: workers round-robin."""
    workers = [stream.worker_batches(w) for w in range(max(stream.cfg.num_workers, 1))]
    for k in itertools.count():
        yield next(workers[k % len(workers)])


def run(streams, steps):
    """``steps`` micro-batches on every rank: (per-rank batch lists, merged state as JSON-round-tripped dict)."""
    trackers = [s.tracker() for s in streams]
    iters = [rank_batches(s) for s in streams]
    batches = [[] for _ in streams]
    for _ in range(steps):
        for r, it in enumerate(iters):
            batch = next(it)
            trackers[r].update(batch)
            batches[r].append(batch)
    summaries = [t.summary() for t in trackers]
    states = [s.state_dict(summaries) for s in streams]
    assert all(st == states[0] for st in states)  # every rank derives the same state
    return batches, json.loads(json.dumps(states[0]))


def rows(batches):
    """(block, row) -> (input_ids, example ids) of every consumed row."""
    out = {}
    for batch in itertools.chain.from_iterable(batches):
        for i in range(len(batch.block)):
            key = (int(batch.block[i]), int(batch.row[i]))
            assert key not in out, f"row {key} consumed twice"
            examples = tuple((m["task"], m["record"], m["epoch"]) for m in batch.meta[i])
            out[key] = (tuple(batch.tensors["input_ids"][i].tolist()), examples, int(batch.block_rows[i]))
    return out


def same_batch(a, b):
    return (
        a.tensors.keys() == b.tensors.keys()
        and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
        and all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("block", "row", "block_rows"))
        and a.meta == b.meta and a.counters == b.counters
    )


@pytest.mark.parametrize("world_size,workers", [(1, 0), (2, 2)])
def test_resumed_stream_equals_uninterrupted(env, world_size, workers):
    cfg = config(num_workers=workers, seq_len=24)  # short rows: some examples are truncated (counted)
    full, _ = run(make_streams(env, world_size, cfg), 12)
    head, state = run(make_streams(env, world_size, cfg), 5)  # odd: the workers' round-robin must rotate
    assert state["partial"]  # resumes mid-block
    tail, _ = run(make_streams(env, world_size, cfg, state=state), 7)
    assert any(b.counters for b in full[0])  # ... and over-length counts are not repeated
    for r in range(world_size):
        assert all(same_batch(a, b) for a, b in zip(full[r], head[r] + tail[r]))
        assert len(full[r]) == len(head[r] + tail[r]) == 12
    # the state stays small: only the blocks between frontier and horizon are listed
    assert len(state["partial"]) + len(state["complete"]) <= 2 * world_size * max(workers, 1)


def test_a_real_dataloader_matches_the_simulated_round_robin(env):
    cfg = config(num_workers=2)
    (stream,) = make_streams(env, 1, cfg)
    loader = iter(build_loader(stream))
    real = [next(loader) for _ in range(5)]
    simulated = list(itertools.islice(rank_batches(stream), 5))
    assert all(same_batch(a, b) for a, b in zip(real, simulated))


@pytest.mark.parametrize(
    "before,after",
    [((2, 0), (1, 0)), ((1, 0), (2, 0)), ((1, 2), (1, 0)), ((2, 2), (3, 1))],
    ids=["2ranks->1", "1rank->2", "2workers->0", "4consumers->3"],
)
def test_elastic_resume_consumes_every_row_and_example_exactly_once(env, before, after):
    mix, manifest, _ = env
    head, state = run(make_streams(env, before[0], config(num_workers=before[1])), 9)
    tail, final = run(make_streams(env, after[0], config(num_workers=after[1], micro_batch_size=3), state=state), 11)
    consumed = rows(head + tail)  # raises on a row consumed twice
    assert len(consumed) == 9 * 2 * before[0] + 11 * 3 * after[0]

    # every row of every block below the final frontier was consumed
    frontier = final["frontier"]
    assert frontier > state["horizon"]  # the check covers blocks both runs touched
    below = {k: v for k, v in consumed.items() if k[0] < frontier}
    for block in range(frontier):
        n = next(v[2] for k, v in below.items() if k[0] == block)
        assert sorted(r for b, r in below if b == block) == list(range(n))

    # ... and rows are the global stream's own: the same as a fresh single consumer packs them
    (reference,) = make_streams(env, 1, config())
    ref = rows([list(itertools.islice(rank_batches(reference), 200))])
    assert all(ref[k][:2] == v[:2] for k, v in below.items())
    _assert_epochs_exactly_once(below, final, manifest)


def _assert_epochs_exactly_once(rows_below_frontier, state, manifest):
    """Each task's examples before the frontier are its first ``cursor`` picks: whole epochs, each record once."""
    seen = Counter(ex for _, examples, _ in rows_below_frontier.values() for ex in examples)
    assert max(seen.values()) == 1
    for task, cursor in state["cursors"].items():
        n = manifest.num_records(task)
        mine = [(epoch, rec) for (t, rec, epoch) in seen if t == task]
        assert len(mine) == cursor
        for epoch in range(cursor // n):
            assert sorted(rec for e, rec in mine if e == epoch) == list(range(n))
        assert len([1 for e, _ in mine if e == cursor // n]) == cursor % n


def test_weight_change_on_resume_neither_drops_nor_repeats_records(env):
    mix, manifest, _ = env
    cfg = config(num_workers=0)
    head, state = run(make_streams(env, 2, cfg), 8)
    new = {"words": 5.0, "numbers": 0.5}
    resumed = make_streams(env, 2, cfg, state=state, rate_overrides=new)
    tail, final = run(resumed, 12)
    consumed = rows(head + tail)
    below = {k: v for k, v in consumed.items() if k[0] < final["frontier"]}
    assert final["frontier"] > state["horizon"]  # the check spans blocks under both rates
    _assert_epochs_exactly_once(below, final, manifest)
    # blocks before the old horizon kept the old rates, later ones use the new rates
    old_rates, new_rates = mix.rates(), mix.rates(new)
    assert old_rates != new_rates
    assert StreamState.from_dict(final).segments[-1] == (state["horizon"], new_rates)
    for block, overrides in ((state["horizon"] - 1, None), (state["horizon"], new)):
        (expected,) = make_streams(env, 1, cfg, rate_overrides=overrides)
        assert np.array_equal(resumed[0].schedule.picks(block), expected.schedule.picks(block))


def test_task_frequencies_match_rates(env):
    """Over n draws, each task's share p̂ is within 5σ of its rate p, σ = sqrt(p(1-p)/n)."""
    mix = env[0]
    (stream,) = make_streams(env, 1, config(block_size=512))
    picks = np.concatenate([stream.schedule.picks(b) for b in range(200)])
    n = len(picks)
    counts = np.bincount(picks, minlength=len(stream.schedule.names))
    rates = mix.rates()
    assert set(rates) == set(stream.schedule.names)
    for i, name in enumerate(stream.schedule.names):
        p = rates[name]
        assert abs(counts[i] / n - p) <= 5 * np.sqrt(p * (1 - p) / n), name
    # the batches hold exactly the picked tasks (nothing dropped at this length)
    (small,) = make_streams(env, 1, config(block_size=16, seq_len=128))
    got = Counter()
    for batch in itertools.islice(rank_batches(small), 40):
        got.update(m["task"] for row, b in zip(batch.meta, batch.block) if b == 0 for m in row)
    assert got == Counter(small.schedule.names[t] for t in small.schedule.picks(0).tolist())


@pytest.mark.parametrize("include_inputs", [False, True])
def test_rows_hold_the_rendered_examples_with_segments_positions_and_loss_mask(env, include_inputs):
    mix, _, tokenizer = env
    cfg = config(include_inputs_in_loss=include_inputs)
    (stream,) = make_streams(env, 1, cfg)
    tasks = {t.name: t for t in mix.tasks()}
    groups = mix.group_of()
    batch = next(stream.worker_batches(0))
    for i, metas in enumerate(batch.meta):
        seg = batch.tensors["segment_ids"][i]
        assert seg.max() == len(metas) and (seg[seg > 0].diff() >= 0).all()
        for k, m in enumerate(metas, start=1):
            at = (seg == k).nonzero().flatten()
            assert torch.equal(batch.tensors["position_ids"][i][at], torch.arange(len(at)))
            record = tasks[m["task"]].records("train")[m["record"]]
            ex = tasks[m["task"]].render(record, random.Random(f"{cfg.seed}/{m['task']}/{m['record']}/{m['epoch']}"), m["record"])
            inp, tgt = tokenizer.encode(ex.inputs), tokenizer.encode(ex.targets) + [tokenizer.eos_id]
            assert batch.tensors["input_ids"][i][at].tolist() == inp + tgt
            assert (m["template_id"], m["format"], m["group"]) == (ex.template_id, ex.format, groups[m["task"]])
            labels = batch.tensors["labels"][i][at].tolist()
            first = 0 if include_inputs else len(inp) - 1
            assert labels == [IGNORE_INDEX] * first + (inp + tgt)[first + 1:] + [IGNORE_INDEX]
        pad = seg == 0
        assert (batch.tensors["labels"][i][pad] == IGNORE_INDEX).all()
        assert (batch.tensors["input_ids"][i][pad] == tokenizer.pad_id).all()


def test_t5_stream_packs_both_sides(env):
    mix, _, tokenizer = env
    (stream,) = make_streams(env, 1, config(arch="t5", seq_len=40, target_len=16))
    batch = next(stream.worker_batches(0))
    assert batch.tensors["input_ids"].shape == (2, 40) and batch.tensors["labels"].shape == (2, 16)
    for i, metas in enumerate(batch.meta):
        for k, m in enumerate(metas, start=1):
            dec = (batch.tensors["decoder_segment_ids"][i] == k).nonzero().flatten()
            enc = (batch.tensors["segment_ids"][i] == k).nonzero().flatten()
            labels = batch.tensors["labels"][i][dec].tolist()
            assert labels[-1] == tokenizer.eos_id and batch.tensors["input_ids"][i][enc][-1] == tokenizer.eos_id
            assert batch.tensors["decoder_input_ids"][i][dec].tolist() == [tokenizer.pad_id] + labels[:-1]
            assert torch.equal(batch.tensors["decoder_position_ids"][i][dec], torch.arange(len(dec)))


@pytest.mark.parametrize("policy,counter", [("truncate", "truncated"), ("drop", "dropped")])
def test_overlong_examples_are_truncated_or_dropped_and_counted(env, policy, counter):
    (stream,) = make_streams(env, 1, config(seq_len=12, overlong=policy))
    tracker = stream.tracker()
    in_rows = Counter()
    for batch in rank_batches(stream):
        tracker.update(batch)
        assert (batch.tensors["segment_ids"] > 0).sum(dim=1).max() <= 12
        for row, block in zip(batch.meta, batch.block.tolist()):
            in_rows[block] += len(row)
        if tracker.micro_batches >= 30 and batch.row[-1] == batch.block_rows[-1] - 1:
            break  # stop at the end of a block: every block so far fully read
    counted = sum(c[counter] for c in tracker.counters.values())
    blocks = range(max(in_rows) + 1)
    if policy == "drop":  # at this length some blocks pack no row at all: their count still arrives
        assert min(in_rows[b] for b in blocks) == 0
        assert counted == sum(16 - in_rows[b] for b in blocks)
    else:
        assert counted > 0 and all(in_rows[b] == 16 for b in blocks)


def test_records_of_a_corrupt_shard_member_are_an_error_or_skipped_and_counted(env, tmp_path):
    mix, _, tokenizer = env
    manifest = prepare(mix, tmp_path, records_per_shard=10, progress=False)
    shard = manifest.shards("last")[1]  # records 10..19 of 'last'
    data = bytearray(shard.path.read_bytes())
    data[700] ^= 0x01
    shard.path.write_bytes(bytes(data))
    damaged = (mix, manifest, tokenizer)
    (failing,) = make_streams(damaged, 1, config())
    with pytest.raises(ShardError, match=f"{shard.path}: member 00000_000000000.jsonl does not match its checksum"):
        list(itertools.islice(rank_batches(failing), 40))
    blocks = 12  # one row a batch: a block's counters come with its first row, so blocks < 12 are whole

    def first_blocks(stream):
        return itertools.takewhile(lambda b: b.block[0] < blocks, rank_batches(stream))

    (clean,) = make_streams(env, 1, config(micro_batch_size=1))
    bad = sum(m["task"] == "last" and 10 <= m["record"] < 20 for b in first_blocks(clean) for m in b.meta[0])
    (skipping,) = make_streams(damaged, 1, config(micro_batch_size=1, on_bad_record="skip"))
    tracker = skipping.tracker()
    for batch in first_blocks(skipping):
        tracker.update(batch)
        assert not any(m["task"] == "last" and 10 <= m["record"] < 20 for m in batch.meta[0])
    assert bad > 0 and tracker.counters["last"]["corrupt"] == bad


def test_bad_input_fails_at_construction_naming_the_cause(env, tmp_path):
    mix, manifest, tokenizer = env
    cfg = config()
    with pytest.raises(TaskError, match="every rate is zero"):
        MixtureStream(mix, tokenizer, cfg, manifest, rate_overrides={"words": 0.0, "numbers": 0.0})
    _, state = run(make_streams(env, 1, cfg), 4)
    assert state["partial"]  # a block read in part still needs the old rates' tasks
    with pytest.raises(ValueError, match=r"seed \(saved 7, now 8\).*seq_len \(saved 48, now 64\)"):
        MixtureStream(mix, tokenizer, config(seed=8, seq_len=64), manifest, state=state)
    smaller = Mixture("mix", [(mix.tasks()[0], Rate.fixed(1.0))])
    with pytest.raises(TaskError, match=r"still samples task\(s\) \['count', 'last', 'shout'\]"):
        MixtureStream(smaller, tokenizer, cfg, manifest, state=state)
    copy = prepare(mix, tmp_path, records_per_shard=10, progress=False)
    lost = copy.shards("last")[2].path
    lost.unlink()
    with pytest.raises(ShardError, match=f"{lost}: shard is missing"):
        MixtureStream(mix, tokenizer, cfg, copy)


def test_dataloader_with_other_worker_count_is_an_error(env):
    (stream,) = make_streams(env, 1, config(num_workers=0))
    with pytest.raises(Exception, match="num_workers=0 but the DataLoader runs 2"):
        next(iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="fork")))


def test_merge_rejects_summaries_from_different_consumer_counts(env):
    (stream,) = make_streams(env, 1, config())
    start = StreamState.from_dict(stream.state_dict([stream.tracker().summary()]))
    with pytest.raises(ValueError, match="disagree on the number of consumers"):
        merge_state(start, [{"consumers": 2, "micro_batches": 0, "lanes": []}, {"consumers": 3, "micro_batches": 0, "lanes": []}])
