"""The bad-input corpus: one small file per case, each stating its exact outcome in a header.

``tasks/*.yaml`` are task or mixture files loaded through the registry (then the first
record of every task is rendered in each of its formats, and its metric looked up as
``flanforge train`` and evaluation do); ``configs/*.yaml`` are
run configs loaded with their ``# overrides:``. A case expects either

    # expect-error: REGEX      the project's own error, one line, matching REGEX
    # expect-skipped: N        it loads, and its tasks skipped N bad records in all

Data files the cases read are in ``data/``.
"""

import random
import re
from pathlib import Path

import pytest

from flanforge.launcher.config import ConfigError, load_config
from flanforge.launcher.evaluation.suites import check_metrics
from flanforge.errors import USER_ERRORS
from flanforge.mixtures import registry
from flanforge.mixtures.task import SPLITS

HERE = Path(__file__).parent


def header(path: Path) -> dict[str, str]:
    """``# key: value`` lines at the top of a case file."""
    out = {}
    for line in path.read_text().splitlines():
        match = re.match(r"# ([\w-]+): (.*)$", line)
        if not match:
            break
        out[match[1]] = match[2]
    return out


def check_outcome(case: Path, load) -> None:
    expect = header(case)
    assert ("expect-error" in expect) != ("expect-skipped" in expect), f"{case.name}: state one outcome"
    if "expect-error" in expect:
        with pytest.raises(USER_ERRORS) as caught:
            load()
        message = str(caught.value)
        assert "\n" not in message, message
        assert re.search(expect["expect-error"], message), f"{case.name}: got {message}"
    else:
        assert load() == int(expect["expect-skipped"])


def load_and_render(case: Path) -> int:
    """Load the case's mixture, check its metrics, read every split, render every task's first record in each
    of its formats."""
    mixture = registry.load_mixture(case)
    check_metrics(mixture)
    rng = random.Random(0)
    for task in mixture.tasks():
        for split in SPLITS:
            task.records(split)
        for fmt in task.formats:
            task.render(task.records("train")[0], rng, 0, format_name=fmt)
    return sum(task.bad_records for task in mixture.tasks())


@pytest.fixture(autouse=True)
def clean_registry():
    registry.reset()
    yield
    registry.reset()


@pytest.mark.parametrize("case", sorted((HERE / "tasks").glob("*.yaml")), ids=lambda p: p.stem)
def test_task_and_mixture_files(case):
    check_outcome(case, lambda: load_and_render(case))


@pytest.mark.parametrize("case", sorted((HERE / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_configs(case):
    overrides = header(case).get("overrides", "").split()
    check_outcome(case, lambda: load_config(case, overrides))


def test_every_config_case_is_a_config_error():
    """Config cases fail in the config loader itself, not later."""
    for case in (HERE / "configs").glob("*.yaml"):
        with pytest.raises(ConfigError):
            load_config(case, header(case).get("overrides", "").split())
