"""``flanforge inspect``: the JSON document, the table, rendered examples, one-line errors."""

import argparse
import json

import pytest

from flanforge.launcher.commands import inspect as inspect_mixture
from flanforge.launcher.cli import main
from flanforge.mixtures import registry


@pytest.fixture(autouse=True)
def clean_registry():
    registry.reset()
    yield
    registry.reset()


def run(capsys, *argv):
    parser = argparse.ArgumentParser()
    inspect_mixture.add_arguments(parser)
    assert inspect_mixture.run(parser.parse_args(list(argv))) == 0
    return capsys.readouterr().out


def test_json_lists_every_task_with_rate_and_epochs(capsys):
    doc = json.loads(run(capsys, "demo", "--json", "--steps", "100", "--examples-per-step", "8"))
    tasks = {t["name"]: t for t in doc["tasks"]}
    assert doc["mixture"] == "demo" and len(tasks) == 6
    assert sum(t["rate"] for t in tasks.values()) == pytest.approx(1.0)
    add = tasks["demo_add"]
    assert add["mixture"] == "demo_numbers" and add["cap"] == 2000 and add["templates"] >= 10
    assert add["formats"] == ["zs_noopt", "fs_noopt", "zs_cot"] and add["bad_records"] == 0
    assert add["epochs"] == pytest.approx(100 * 8 * add["rate"] / add["examples"])


def test_render_prints_n_examples_per_format(capsys):
    doc = json.loads(run(capsys, "demo", "--json", "--render", "2"))
    per_format = {}
    for ex in doc["rendered"]:
        per_format[ex["format"]] = per_format.get(ex["format"], 0) + 1
        assert ex["template_id"] and ex["targets"]
    assert per_format == {"zs_opt": 2, "zs_noopt": 2, "fs_noopt": 2, "zs_cot": 2}


def test_table_for_a_task_yaml_reports_skipped_records(tmp_path, capsys):
    (tmp_path / "data.jsonl").write_text('{"q": "a", "answer": "b"}\n{"q": "c"}\n')
    (tmp_path / "t.yaml").write_text(
        "task: tiny\nsource: {path: data.jsonl, on_bad_record: skip}\n"
        "templates: [{id: t, input: '{{ q }}', target: '{{ answer }}'}]\n"
    )
    out = run(capsys, str(tmp_path / "t.yaml"), "--steps", "10", "--examples-per-step", "2")
    assert "mixture 'tiny': 1 tasks, 1 training examples" in out
    assert "skipped bad records: 1" in out
    assert "tiny" in out.splitlines()[-1] and out.splitlines()[-1].split()[-2] == "20.000"  # 10 * 2 / 1 epochs


def test_expected_mistakes_are_one_line_errors(capsys):
    assert main(["inspect", "buitlin"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flanforge inspect: error: unknown mixture 'buitlin'; closest: builtin") and "\n" not in err
