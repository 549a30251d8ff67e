"""Mixing rates against hand-computed values: fixed, examples-proportional with caps, temperature, nesting."""

import math

import pytest

from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.task import Task, TaskError, Template


def sized(name, n):
    return Task(name, ("x",), (Template("t", "{{ x }}", "{{ x }}"),), lambda split: [{"x": "1"}] * n)


A, B, C, D = sized("a", 100), sized("b", 400), sized("c", 1600), sized("d", 50)


def assert_rates_close(got, want):
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    assert math.fsum(got.values()) == pytest.approx(1.0)


def test_examples_proportional_without_and_with_a_cap():
    assert_rates_close(Mixture("m", [(A, Rate.examples()), (B, Rate.examples()), (C, Rate.examples())]).rates(),
          {"a": 100 / 2100, "b": 400 / 2100, "c": 1600 / 2100})
    # FLAN: rate = min(n, cap); 100, 400, 500 -> /1000
    assert_rates_close(Mixture("m", [(A, Rate.examples(cap=500)), (B, Rate.examples(cap=500)), (C, Rate.examples(cap=500))]).rates(),
          {"a": 0.1, "b": 0.4, "c": 0.5})


def test_temperature_scales_the_capped_sizes():
    # min(n, 500) ** (1/2): 10, 20, sqrt(500)
    total = 10 + 20 + math.sqrt(500)
    rate = Rate.examples(cap=500, temperature=2.0)
    assert_rates_close(Mixture("m", [(A, rate), (B, rate), (C, rate)]).rates(), {"a": 10 / total, "b": 20 / total, "c": math.sqrt(500) / total})


def test_fixed_weights_and_nesting_multiply_down_the_path():
    sub1 = Mixture("sub1", [(A, Rate.examples(cap=300)), (B, Rate.examples(cap=300))])  # 100 : 300
    sub2 = Mixture("sub2", [(C, Rate.fixed(1)), (D, Rate.fixed(1))])
    top = Mixture("top", [(sub1, Rate.fixed(3.0)), (sub2, Rate.fixed(1.0))])
    assert_rates_close(top.rates(), {"a": 0.75 * 0.25, "b": 0.75 * 0.75, "c": 0.125, "d": 0.125})
    # an override replaces a sub-mixture's weight by name: 3 : 3
    assert_rates_close(top.rates({"sub2": 3.0}), {"a": 0.125, "b": 0.375, "c": 0.25, "d": 0.25})
    assert top.group_of() == {"a": "sub1", "b": "sub1", "c": "sub2", "d": "sub2"}


def test_a_sub_mixture_with_an_examples_rate_counts_all_its_examples():
    sub = Mixture("sub", [(A, Rate.fixed(1)), (B, Rate.fixed(1))])  # 500 examples
    top = Mixture("top", [(sub, Rate.examples()), (C, Rate.examples(cap=1500))])
    assert_rates_close(top.rates(), {"a": 0.25 * 0.5, "b": 0.25 * 0.5, "c": 0.75})
    assert top.group_of() == {"a": "sub", "b": "sub", "c": "top"}


def test_a_task_in_two_sub_mixtures_gets_both_shares():
    top = Mixture("top", [(Mixture("s1", [(A, Rate.fixed(1))]), Rate.fixed(1)), (Mixture("s2", [(A, Rate.fixed(1)), (B, Rate.fixed(1))]), Rate.fixed(1))])
    assert_rates_close(top.rates(), {"a": 0.75, "b": 0.25})
    assert [t.name for t in top.tasks()] == ["a", "b"]


def test_zero_weight_members_are_left_out():
    assert_rates_close(Mixture("m", [(A, Rate.fixed(0)), (B, Rate.fixed(2))]).rates(), {"b": 1.0})


def test_bad_mixtures_and_overrides_are_errors():
    with pytest.raises(TaskError, match="every rate is zero"):
        Mixture("m", [(A, Rate.fixed(0))]).rates()
    with pytest.raises(TaskError, match=r"no member 'sub3' to override; closest: sub1"):
        Mixture("top", [(Mixture("sub1", [(A, Rate.fixed(1))]), Rate.fixed(1))]).rates({"sub3": 1.0})
    with pytest.raises(TaskError, match="listed twice"):
        Mixture("m", [(A, Rate.fixed(1)), (A, Rate.fixed(2))])
    with pytest.raises(TaskError, match="temperature must be a finite number > 0"):
        Rate.examples(temperature=0)
