"""Formats: zero-/few-shot with and without options, chain of thought, inversion, the token budget."""

import random

import pytest

from flanforge.mixtures.formats import FORMAT_KINDS, FORMATS, format_kind
from flanforge.mixtures.task import Task, TaskError, Template

TRAIN = [{"q": f"question {i}", "answer": f"answer{i}", "why": f"because {i}", "options": [f"answer{i}", "other"]} for i in range(50)]
POOL = [{"q": f"pool {i}", "answer": f"shot{i}", "why": f"since {i}", "options": [f"shot{i}", "other"]} for i in range(8)]


def source(split):
    return {"train": TRAIN, "exemplars": POOL, "validation": []}[split]


def make_task(**kwargs):
    settings = dict(
        formats=tuple(FORMATS),
        options_field="options",
        rationale_field="why",
        inverted_templates=(Template("inv", "{{ answer }}", "{{ q }}", "Ask the question."),),
        max_shots=3,
    )
    settings.update(kwargs)
    return Task("qa", ("q", "answer", "why", "options"), (Template("t", "{{ q }}", instruction="Answer it."),), source, **settings)


def render(task, fmt, seed=0, **kwargs):
    return task.render(TRAIN[4], random.Random(seed), 4, format_name=fmt, **kwargs)


def test_format_kind_of_every_format():
    assert {name: format_kind(name) for name in FORMATS} == {
        "zs_opt": "zero_shot", "zs_noopt": "zero_shot", "fs_opt": "few_shot", "fs_noopt": "few_shot",
        "zs_cot": "cot", "fs_cot": "cot", "zs_inv": "inverted", "fs_inv": "inverted",
    }
    assert set(FORMAT_KINDS) == {format_kind(n) for n in FORMATS}
    with pytest.raises(ValueError, match="unknown format 'fs_copt'"):
        format_kind("fs_copt")


def test_zero_shot_with_and_without_options():
    task = make_task()
    noopt, opt = render(task, "zs_noopt"), render(task, "zs_opt")
    assert noopt.inputs == "Answer it.\n\nquestion 4" and noopt.targets == "answer4"
    assert opt.inputs.startswith("Answer it.\n\nquestion 4\n\n") and opt.inputs.endswith("- answer4\n- other")
    assert opt.targets == "answer4"


def test_instruction_position_is_a_setting():
    after = make_task(instruction_first=False)
    assert render(after, "zs_noopt").inputs == "question 4\n\nAnswer it."
    assert render(make_task(), "zs_noopt", instruction_first=False).inputs == "question 4\n\nAnswer it."


def test_chain_of_thought_gives_the_rationale_then_the_answer():
    zs = render(make_task(), "zs_cot")
    assert zs.targets.startswith("because 4 ") and zs.targets.endswith("answer4.")
    assert zs.inputs.startswith("Answer it.\n\nquestion 4\n\n") and zs.inputs != "Answer it.\n\nquestion 4"
    fs = render(make_task(), "fs_cot", seed=3)
    assert "since " in fs.inputs and fs.targets.startswith("because 4")


def test_inversion_uses_the_inverted_templates():
    ex = render(make_task(), "zs_inv")
    assert ex.template_id == "inv" and ex.inputs == "Ask the question.\n\nanswer4" and ex.targets == "question 4"
    assert format_kind(ex.format) == "inverted"


def test_few_shot_exemplars_come_only_from_the_exemplar_pool():
    task = make_task()
    for seed in range(40):
        ex = render(task, "fs_noopt", seed=seed)
        shots = [f"shot{i}" for i in range(len(POOL)) if f"shot{i}" in ex.inputs]
        assert 1 <= len(shots) <= task.max_shots
        assert not any(r["answer"] in ex.inputs for r in TRAIN)  # no training target leaks into a prompt
        assert ex.inputs.count("Answer it.") == 1 and ex.targets == "answer4"


def test_few_shot_budget_drops_whole_exemplars_and_falls_back_to_zero_shot():
    task = make_task(max_shots=3)
    seed = next(s for s in range(100) if render(task, "fs_noopt", seed=s).inputs.count("shot") == 3)
    full = render(task, "fs_noopt", seed=seed)
    count = lambda text: len(text.split())  # noqa: E731
    total = count(full.inputs) + count(full.targets)
    trimmed = render(task, "fs_noopt", seed=seed, fewshot_budget=total - 1, count_tokens=count)
    assert trimmed.format == "fs_noopt" and trimmed.inputs.count("shot") == 2
    assert count(trimmed.inputs) + count(trimmed.targets) <= total - 1
    kept = [s for s in (f"shot{i}" for i in range(8)) if s in trimmed.inputs]
    assert all(s in full.inputs for s in kept)  # whole exemplars kept as they were, the last one dropped
    tiny = render(task, "fs_noopt", seed=seed, fewshot_budget=1, count_tokens=count)
    assert tiny.format == "zs_noopt" and "shot" not in tiny.inputs


def test_few_shot_needs_an_instruction_that_does_not_depend_on_the_record():
    task = Task("t", ("q", "answer"), (Template("t", "", instruction="Answer {{ q }}."),), source, formats=("fs_noopt",))
    with pytest.raises(TaskError, match="instruction differs between records"):
        render(task, "fs_noopt")


def test_few_shot_without_a_pool_is_an_error():
    task = Task("t", ("q", "answer"), (Template("t", "{{ q }}"),), lambda s: TRAIN if s == "train" else [], formats=("fs_noopt",))
    with pytest.raises(TaskError, match="needs an 'exemplars' split"):
        render(task, "fs_noopt")
