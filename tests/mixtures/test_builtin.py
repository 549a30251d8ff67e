"""The built-in suite: size, phrasings, held-out families, deterministic disjoint splits, every format renders."""

import random
from collections import Counter

import pytest

from flanforge.mixtures import registry
from flanforge.mixtures.builtin import CLUSTERS, DEMO, HELDOUT, family_counts
from flanforge.mixtures.builtin.core import TRAIN_SIZES, GeneratedRecords
from flanforge.mixtures.sources.base import record_key


def test_builtin_has_at_least_1800_tasks_each_with_ten_phrasings():
    tasks = registry.get_mixture("builtin").tasks()
    assert len(tasks) >= 1800 and len({t.name for t in tasks}) == len(tasks)
    assert min(len(t.templates) for t in tasks) >= 10
    assert all(len({tpl.instruction for tpl in t.templates}) >= 10 for t in tasks)
    per_family = Counter(t.family for t in tasks)
    counts = family_counts()
    assert all(per_family[f] == n for f, n in counts.items() if f not in {h.name for h in HELDOUT})


def test_held_out_families_are_in_no_training_mixture():
    held = {f.name for f in HELDOUT}
    heldout_tasks = registry.get_mixture("builtin_heldout").tasks()
    assert {t.family for t in heldout_tasks} == held and len(heldout_tasks) >= 30
    for name in registry.mixture_names():
        if name != "builtin_heldout":
            assert not {t.family for t in registry.get_mixture(name).tasks()} & held, name


def test_clusters_mix_examples_proportionally_under_their_caps():
    mixture = registry.get_mixture("builtin")
    rates = mixture.rates()
    families, cap, weight = CLUSTERS["arithmetic"]
    cluster = registry.get_mixture("builtin_arithmetic").tasks()
    capped = {t.name: min(t.num_examples(), cap) for t in cluster}
    for task in cluster[:5]:
        assert rates[task.name] == pytest.approx(weight * capped[task.name] / sum(capped.values()), rel=1e-9)
    assert any(t.num_examples() > cap for t in cluster) and any(t.num_examples() < cap for t in cluster)


def test_records_are_deterministic_lazy_and_sized():
    task = registry.get_task("sort_numbers_hundreds_long_desc_comma")
    first = [task.records()[i] for i in (0, 7, len(task.records()) - 1)]
    registry.reset()
    again = registry.get_task("sort_numbers_hundreds_long_desc_comma")
    assert [again.records()[i] for i in (0, 7, -1)] == first
    assert TRAIN_SIZES[0] <= len(task.records()) < TRAIN_SIZES[1]
    assert task.records()[3] != registry.get_task("sort_numbers_hundreds_long_asc_comma").records()[3]


def test_every_task_draws_records_in_every_split():
    for task in registry.get_mixture("builtin").tasks() + registry.get_mixture("builtin_heldout").tasks():
        src = task.source
        for split in ("exemplars", "validation", "train"):
            assert GeneratedRecords(src.make, src.params, src.key, split, 1)[0].keys() == set(task.fields)


def test_no_exemplar_or_validation_record_is_a_training_record():
    # small instance spaces are where a leak would show first
    for name in ("add_1_2", "parity_even_odd_2", "number_to_words_tens_hyphen", "multiply_1x1_star", "topic_animal_clothing_color"):
        task = registry.get_task(name)
        train = {record_key(r) for r in task.records("train")}
        held = [record_key(r) for split in ("exemplars", "validation") for r in task.records(split)]
        assert len(train) > 10 and held and not train & set(held), name


def test_every_format_of_every_family_renders():
    rng = random.Random(0)
    seen = set()
    for task in registry.get_mixture("builtin").tasks() + registry.get_mixture("builtin_heldout").tasks():
        if task.family in seen:
            continue
        seen.add(task.family)
        ids = {t.id for t in task.templates + task.inverted_templates}
        for fmt in task.formats:  # few-shot formats also check the instruction is the same for every record
            ex = task.render(task.records()[1], rng, 1, format_name=fmt)
            assert ex.targets and ex.template_id in ids and ex.format in (fmt, "zs" + fmt[2:])
    assert len(seen) == len(family_counts())


def test_demo_is_small_short_and_apart_from_builtin():
    demo = registry.get_mixture("demo")
    assert [t.name for t in demo.tasks()] == list(DEMO)
    assert not {t.name for t in demo.tasks()} & {t.name for t in registry.get_mixture("builtin").tasks()}
    rng = random.Random(0)
    for task in demo.tasks():
        records = task.records()
        lengths = [len(" ".join((e.inputs, e.targets)).split()) for e in (task.render(records[i], rng, i) for i in range(200))]
        assert max(lengths) <= 60, task.name
