"""Task and Template: field checks at construction, sandboxed rendering, determinism, bad templates."""

import random

import pytest

from flanforge.mixtures.task import SPLITS, Task, TaskError, Template


def records(split):
    return {
        "train": [{"text": f"train {i}", "answer": f"T{i}", "options": ["T0", "T1"]} for i in range(20)],
        "exemplars": [{"text": f"shot {i}", "answer": f"S{i}", "options": ["S0", "S1"]} for i in range(5)],
        "validation": [],
    }[split]


def make_task(templates=None, **kwargs):
    templates = templates or [Template("t0", "{{ text }}", instruction="Copy the text.")]
    return Task("copy", ("text", "answer", "options"), templates, records, **kwargs)


def test_template_naming_an_unknown_field_is_an_error_naming_task_template_and_field():
    with pytest.raises(TaskError) as err:
        make_task([Template("good", "{{ text }}"), Template("bad", "{{ txt }}")])
    message = str(err.value)
    assert "task 'copy'" in message and "template 'bad'" in message and "field 'txt'" in message
    assert "did you mean 'text'" in message


def test_template_syntax_error_and_duplicate_ids_are_errors():
    with pytest.raises(TaskError, match="template 'x': syntax error"):
        make_task([Template("x", "{{ text ")])
    with pytest.raises(TaskError, match="duplicate template id 't'"):
        make_task([Template("t", "{{ text }}"), Template("t", "{{ answer }}")])


def test_template_cannot_reach_python_internals():
    task = make_task([Template("evil", "{{ text.__class__.__mro__[1].__subclasses__() }}")])
    with pytest.raises(TaskError) as err:
        task.render(records("train")[3], random.Random(0), 3)
    assert "template 'evil'" in str(err.value) and "example 3" in str(err.value)


def test_render_failure_names_task_template_and_example_index():
    task = make_task([Template("add", "{{ text + 1 }}")])
    with pytest.raises(TaskError, match=r"task 'copy', template 'add': cannot render example 7: TypeError"):
        task.render(records("train")[7], random.Random(0), 7)


def test_empty_target_is_an_error():
    task = Task("t", ("text",), [Template("t0", "{{ text }}", target="{{ '' }}")], records)
    with pytest.raises(TaskError, match="renders an empty target"):
        task.render({"text": "x"}, random.Random(0), 0)


def test_render_is_a_pure_function_of_the_rng():
    templates = [Template(f"t{i}", "{{ text }}", instruction=f"Phrasing {i}.") for i in range(6)]
    task = make_task(templates, formats=("zs_noopt", "zs_opt", "fs_noopt", "fs_opt"), options_field="options")
    record = records("train")[2]
    first = [task.render(record, random.Random(f"seed/{i}"), 2) for i in range(30)]
    again = [task.render(record, random.Random(f"seed/{i}"), 2) for i in range(30)]
    assert first == again
    assert len({(e.template_id, e.format) for e in first}) > 4  # the rng does choose


def test_formats_are_checked_against_what_the_task_has():
    with pytest.raises(TaskError, match="format 'zs_opt' needs an options_field"):
        make_task(formats=("zs_opt",))
    with pytest.raises(TaskError, match="needs a rationale_field"):
        make_task(formats=("fs_cot",))
    with pytest.raises(TaskError, match="needs inverted_templates"):
        make_task(formats=("zs_inv",))
    with pytest.raises(TaskError, match="closest: zs_noopt"):
        make_task(formats=("zs_nopt",))


def test_unknown_split_is_an_error():
    assert SPLITS == ("train", "exemplars", "validation")
    with pytest.raises(TaskError, match="unknown split 'test'"):
        make_task().records("test")


@pytest.mark.parametrize("source", [
    "{{ text|wordwrap(7) }}", "{{ text|truncate(12) }}", "{{ text|center(30) }}", "{{ text|indent(2, true) }}",
    "{{ words|join(', ') }}", "{{ text|replace('o', '0') }}", "{{ '%s=%5d'|format(text, 42) }}",
    "{{ 'a' ~ text ~ 'b' }}", "{{ '%-8s|' % text }}", "{{ '{:>20}|{x}'.format(text, x=3) }}",
    "{{ text.ljust(25) ~ ', '.join(words) }}", "{{ words + words }}",
    "{% for w in words if w != 'b' %}{{ loop.index }}:{{ w }}/{{ loop.length }} {% else %}none{% endfor %}",
    "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{{ twice(text) }}{% for i in range(3) %}{{ i }}{% endfor %}",
])
def test_the_cost_checks_leave_results_as_plain_jinja_renders_them(source):
    """The limited sandbox (checked operations, counted loops and calls) renders what jinja renders."""
    import jinja2

    from flanforge.mixtures import sandbox

    context = {"text": "hello world, once more", "words": ["a", "b", "c"]}
    expected = jinja2.Environment().from_string(source).render(context)
    assert sandbox.render(sandbox.LimitedEnvironment().from_string(source), context) == expected
