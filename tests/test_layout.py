"""The package layout: ``flanforge.*`` resolves to files for static tools, no bare
``launcher``/``mixtures``/``model``/``kernels`` module is importable from an installed flanforge,
and the layers import one way."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("launcher", "mixtures", "model", "kernels")


def _module_file(dotted: str) -> Path | None:
    """Where a static analyser looking under the repository root finds ``dotted`` (no import machinery)."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every ``flanforge.*`` module a file imports (at any depth: lazy imports count)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flanforge"):
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.startswith("flanforge"))
    return modules


def _flanforge_imports() -> set[str]:
    return {m for folder in (*SUBPACKAGES, "tests", "benchmarks") for path in (ROOT / folder).rglob("*.py")
            for m in _imports(path)}


LAYERS = {  # folder -> what of ours it may import (DESIGN.md: "Who owns what"); every folder's
    # __init__ imports flanforge.bare_names, the leaf that refuses bare imports
    "kernels": {"flanforge.kernels", "flanforge.bare_names"},
    "model": {"flanforge.model", "flanforge.kernels", "flanforge.errors", "flanforge.files", "flanforge.config_fields",
              "flanforge.bare_names"},
    "mixtures": {"flanforge.mixtures", "flanforge.kernels", "flanforge.errors", "flanforge.files",
                 "flanforge.config_fields", "flanforge.binpack", "flanforge.bare_names"},
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_import_one_way(layer):
    bad = []
    for path in (ROOT / layer).rglob("*.py"):
        for module in _imports(path):
            if ".".join(module.split(".")[:2]) not in LAYERS[layer]:
                bad.append(f"{path.relative_to(ROOT)}: {module}")
    assert bad == []


def test_leaf_modules_import_nothing_of_ours():
    for path in (ROOT / "flanforge").glob("*.py"):
        assert _imports(path) == set(), path.name


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_the_flanforge_folder_links_each_top_level_folder(name):
    link = ROOT / "flanforge" / name
    assert link.is_symlink() and os.readlink(link) == f"../{name}"
    assert link.resolve() == (ROOT / name).resolve()


def test_every_flanforge_import_resolves_to_a_file_under_the_repository():
    modules = _flanforge_imports()
    assert len(modules) > 40  # the walk saw the code base
    unresolved = sorted(m for m in modules if _module_file(m) is None)
    assert unresolved == []


BARE_PROBE = """
import importlib, importlib.metadata, json, sys
import flanforge.kernels
out = {"flanforge.kernels": flanforge.kernels.__file__}
for name in NAMES:
    try:
        out[name] = importlib.import_module(name).__file__
    except ModuleNotFoundError as err:
        out[name] = "missing: " + str(err)
try:
    out["installed kernels"] = str(importlib.metadata.distribution("kernels").locate_file("kernels/__init__.py"))
except importlib.metadata.PackageNotFoundError:
    out["installed kernels"] = None
print(json.dumps(out))
"""


def _ours(path: str) -> bool:
    """Whether ``path`` is a file of our top-level folders (a venv inside the repository is not ours)."""
    return any(Path(path).resolve().is_relative_to(ROOT / name) for name in SUBPACKAGES)


def _bare_imports(tmp_path: Path, how: str) -> dict:
    probe = BARE_PROBE.replace("NAMES", repr(list(SUBPACKAGES)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    if how == "python -c, from the root":  # sys.path[0] is "" (the root)
        cmd, cwd = [sys.executable, "-c", probe], ROOT
    elif how == "python -m, PYTHONPATH=root":  # sys.path: the working directory, then the root
        (tmp_path / "bare_probe.py").write_text(probe)
        cmd, cwd, env["PYTHONPATH"] = [sys.executable, "-m", "bare_probe"], tmp_path, str(ROOT)
    else:  # from elsewhere: only the installed flanforge
        cmd, cwd = [sys.executable, "-c", probe], tmp_path
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("how", ["python -c, from the root", "python -m, PYTHONPATH=root", "from elsewhere"])
def test_bare_names_never_resolve_to_the_repository(tmp_path, how):
    found = _bare_imports(tmp_path, how)
    assert Path(found.pop("flanforge.kernels")).resolve() == (ROOT / "kernels" / "__init__.py").resolve()
    installed = found.pop("installed kernels")
    # Our folders never answer to their bare names; the PyPI `kernels` (transformers needs it) does.
    assert [name for name, file in found.items() if not file.startswith("missing") and _ours(file)] == []
    if installed is not None:
        assert Path(found["kernels"]).resolve() == Path(installed).resolve()
    if how != "from elsewhere":  # our folders were on the path: their refusal says which name to use
        for name in ("launcher", "mixtures", "model"):
            if found[name].startswith("missing"):
                assert f"flanforge.{name}" in found[name]
