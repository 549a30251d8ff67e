"""requirements.lock (what the README's set-up and CI install) agrees with setup.py's ranges, names the
command that regenerates it, and is what this environment runs on."""

import ast
import importlib.metadata
import os
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def setup_requirements() -> dict[str, list[Requirement]]:
    """``install_requires`` and each extra of setup.py's ``setup(...)`` call, read from its source."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                if k.arg in ("install_requires", "extras_require")}
    groups = {"install_requires": keywords["install_requires"], **keywords["extras_require"]}
    return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


def locked() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if match:
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def torch_spec() -> Requirement:
    makefile = (ROOT / "Makefile").read_text()
    return Requirement(re.search(r"^TORCH_SPEC\s*\?=\s*(\S+)", makefile, re.M)[1])


def test_every_requirement_is_locked_within_its_range():
    pins = locked()
    assert len(pins) > 50  # the whole dependency tree, not only the direct requirements
    groups = setup_requirements()
    assert {"install_requires", "test", "triton"} <= set(groups)
    outside = []
    for group, reqs in groups.items():
        for req in reqs:
            name = canonicalize_name(req.name)
            if name == "torch":  # left out of the lock: TORCH_SPEC installs it (CPU here, CUDA on a cluster)
                version = next(iter(torch_spec().specifier)).version
                assert name not in pins
            else:
                assert name in pins, f"{req.name} ({group}) is not in requirements.lock: run `make lock`"
                version = pins[name]
            if not req.specifier.contains(version, prereleases=True):
                outside.append(f"{req} ({group}): locked {version}")
    assert outside == []


def test_the_lock_names_its_command_and_leaves_torch_out():
    text = LOCK.read_text()
    assert "#    make lock\n" in text
    assert re.search(r"^# The following packages were excluded from the output:\n# torch$", text, re.M)
    assert "lock:" in (ROOT / "Makefile").read_text()


@pytest.mark.skipif(os.environ.get("FLANFORGE_UNLOCKED") == "1", reason="make test-latest: newest versions on purpose")
def test_this_environment_runs_the_locked_versions():
    differ = []
    for name, version in locked().items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            differ.append(f"{name}: locked {version}, not installed")
            continue
        if installed != version:
            differ.append(f"{name}: locked {version}, installed {installed}")
    assert differ == []
    installed_torch = Version(importlib.metadata.version("torch"))
    assert torch_spec().specifier.contains(Version(installed_torch.base_version))
