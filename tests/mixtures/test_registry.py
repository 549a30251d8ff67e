"""Strict registries: duplicates, closest names, reset, lazy factories, the built-in names."""

import pytest

from flanforge.mixtures import registry
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.task import Task, TaskError, Template


def task(name):
    return Task(name, ("x",), (Template("t", "{{ x }}", "{{ x }}"),), lambda split: [{"x": "1"}])


def test_duplicates_are_rejected():
    registry.reset(with_builtins=False)
    registry.register_task(task("alpha"))
    with pytest.raises(TaskError, match="task 'alpha' is already registered"):
        registry.register_task(task("alpha"))
    registry.register_mixture("mix", Mixture("mix", [(task("beta"), Rate.fixed(1))]))
    with pytest.raises(TaskError, match="mixture 'mix' is already registered"):
        registry.register_mixture("mix", lambda: None)


def test_unknown_names_list_the_closest():
    with pytest.raises(TaskError, match=r"unknown mixture 'buitlin'; closest: builtin"):
        registry.get_mixture("buitlin")
    with pytest.raises(TaskError, match=r"unknown task 'reverse_word_animal_short'; closest: reverse_words_animal_short"):
        registry.get_task("reverse_word_animal_short")


def test_reset_empties_and_builtins_come_back_lazily():
    registry.reset(with_builtins=False)
    assert registry.mixture_names() == []
    registry.reset()
    assert {"builtin", "builtin_heldout", "demo"} <= set(registry.mixture_names())
    assert registry.load_mixture("demo") is registry.get_mixture("demo")


def test_a_factory_is_built_once_on_first_use():
    registry.reset(with_builtins=False)
    calls = []

    def factory():
        calls.append(1)
        return Mixture("lazy", [(task("gamma"), Rate.fixed(1))])

    registry.register_mixture("lazy", factory)
    assert calls == []
    assert registry.get_mixture("lazy") is registry.get_mixture("lazy")
    assert calls == [1]


def test_bad_record_policy_is_checked():
    with pytest.raises(TaskError, match="on_bad_record must be one of"):
        registry.load_mixture("demo", on_bad_record="ignore")
