"""The task YAML shown in README.md loads and renders as the README says."""

import json
import random
import re
from pathlib import Path

from flanforge.mixtures import registry

README = Path(__file__).parents[2] / "README.md"


def readme_task_yaml() -> str:
    section = README.read_text().split("### A task in YAML", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_readme_task_yaml_loads_and_renders(tmp_path):
    rows = [{"country": f"Country{i}", "capital": f"City{i}"} for i in range(200)]
    (tmp_path / "capitals.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "capitals.yaml").write_text(readme_task_yaml())
    mixture = registry.load_mixture(str(tmp_path / "capitals.yaml"))
    (task,) = mixture.tasks()
    assert task.name == "capitals"
    # holdout: 16 exemplars and 100 validation records carved from the 200 lines
    assert task.num_examples("exemplars") == 16 and task.num_examples("validation") == 100
    assert task.num_examples("train") == 84
    example = task.render(task.records("train")[0], random.Random(0))
    record = task.records("train")[0]
    assert record["capital"] in example.targets or record["country"] in example.targets
