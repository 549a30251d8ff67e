"""Tasks and mixtures written in YAML by a user, loaded through the registry."""

import json
import random

import pytest

from flanforge.mixtures import registry
from flanforge.mixtures.task import TaskError

TASK_YAML = """
task: capitals
source:
  path: capitals.jsonl
  holdout: {exemplars: 3}
  on_bad_record: skip
templates:
  - id: ask
    instruction: Name the capital city of the country.
    input: "Country: {{ country }}"
    target: "{{ capital }}"
  - id: ask_after
    input: "{{ country }}"
    target: "{{ capital }}"
    instruction: What is the capital of this country?
inverted_templates:
  - {id: inv, instruction: "Which country has this capital?", input: "{{ capital }}", target: "{{ country }}"}
"""
CAPITALS = [("France", "Paris"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Japan", "Tokyo"), ("Italy", "Rome"),
            ("Chile", "Santiago"), ("Egypt", "Cairo"), ("Nepal", "Kathmandu"), ("Spain", "Madrid"), ("Ghana", "Accra")]


@pytest.fixture
def task_file(tmp_path):
    lines = [json.dumps({"country": c, "capital": k}) for c, k in CAPITALS] + ['{"country": "Atlantis"}']
    (tmp_path / "capitals.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "capitals.yaml").write_text(TASK_YAML)
    return tmp_path / "capitals.yaml"


def test_a_task_yaml_becomes_a_registered_one_task_mixture(task_file):
    mixture = registry.load_mixture(str(task_file))
    task = registry.get_task("capitals")
    assert mixture.rates() == {"capitals": 1.0} and mixture.tasks() == [task]
    assert task.fields == ("capital", "country")
    assert task.formats == ("zs_noopt", "zs_inv", "fs_noopt", "fs_inv")
    assert task.num_examples("train") == 7 and task.num_examples("exemplars") == 3 and task.bad_records == 1
    ex = task.render(task.records()[0], random.Random(0), 0, format_name="fs_noopt")
    assert ex.targets == task.records()[0]["capital"]
    assert registry.load_mixture(str(task_file)) is mixture  # loading again gives the same objects


def test_load_mixture_passes_its_bad_record_policy_to_sources_without_one(task_file):
    task_file.write_text(TASK_YAML.replace("  on_bad_record: skip\n", ""))
    with pytest.raises(TaskError, match=r"capitals.jsonl:11: missing field 'capital'"):
        registry.load_mixture(str(task_file)).tasks()[0].records()
    task = registry.load_mixture(str(task_file), on_bad_record="skip").tasks()[0]
    assert task.num_examples("train") == 7 and task.bad_records == 1


def test_a_mixture_yaml_names_task_files_registered_tasks_and_rates(task_file):
    (task_file.parent / "mix.yaml").write_text(
        "mixture: geo_and_words\n"
        "members:\n"
        "  - task: capitals.yaml\n"
        "    rate: 3\n"
        "  - mixture: demo\n"
        "    rate: 1\n"
    )
    mixture = registry.load_mixture(str(task_file.parent / "mix.yaml"))
    rates = mixture.rates()
    assert rates["capitals"] == pytest.approx(0.75)
    assert sum(v for k, v in rates.items() if k.startswith("demo_")) == pytest.approx(0.25)
    assert mixture.group_of()["capitals"] == "geo_and_words" and mixture.group_of()["demo_add"] == "demo"


@pytest.mark.parametrize(
    "text, message",
    [
        ("task: t\nsource: {path: x.jsonl}\ntemplates: []\ntemplate_ids: []\n", "unknown key 'template_ids'; did you mean 'templates'"),
        ("task: t\nsource: {path: x.jsonl, on_bad: skip}\ntemplates: []\n", "unknown key 'on_bad'; did you mean 'on_bad_record'"),
        ("task: t\nsource: {path: x.jsonl}\ntemplates: [{id: a, input: '{{ q }}'}]\nmax_shots: many\n", "'max_shots' must be an integer"),
        ("mixture: m\nmembers: [{task: t, rate: {cap: 10, temp: 2}}]\n", "unknown key 'temp'; did you mean 'temperature'"),
        ("just a string\n", "expected a mapping with a top-level 'task' or 'mixture' key"),
        ("task: t\nsource: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    ],
)
def test_mistakes_in_yaml_are_errors_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TaskError) as err:
        registry.load_mixture(str(path))
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_a_mixture_yaml_takes_flan_exports_and_niv2_directories(tmp_path):
    rows = [{"inputs": f"Copy {i}", "targets": str(i), "task_name": f"copy{i % 2}", "task_source": "T0", "template_type": "zs_noopt"}
            for i in range(6)]
    (tmp_path / "flan.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "niv2").mkdir()
    for n in (1, 2):
        task = {"Definition": ["Echo the input."], "Positive Examples": [{"input": "a", "output": "a"}],
                "Instances": [{"id": str(i), "input": f"w{i}", "output": [f"w{i}"]} for i in range(10 * n)]}
        (tmp_path / "niv2" / f"task00{n}_echo.json").write_text(json.dumps(task))
    (tmp_path / "mix.yaml").write_text(
        "mixture: collection\nmembers:\n"
        "  - {flan_jsonl: flan.jsonl, rate: 1}\n"
        "  - {niv2: niv2, rate: 1, task_rate: {cap: 15}}\n"
    )
    rates = registry.load_mixture(str(tmp_path / "mix.yaml")).rates()
    assert rates == pytest.approx({"copy0": 0.25, "copy1": 0.25, "task001_echo": 0.5 * 10 / 25, "task002_echo": 0.5 * 15 / 25})
    assert registry.get_task("task002_echo").metric == "rouge"
