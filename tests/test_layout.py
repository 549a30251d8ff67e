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


LAYERS = {  # folder -> what of ours it may import (DESIGN.md: "Who owns what")
    "kernels": {"flanforge.kernels"},
    "model": {"flanforge.model", "flanforge.kernels", "flanforge.errors", "flanforge.files", "flanforge.config_fields"},
    "mixtures": {"flanforge.mixtures", "flanforge.kernels", "flanforge.errors", "flanforge.files",
                 "flanforge.config_fields", "flanforge.binpack"},
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


def test_no_bare_top_level_package_is_importable_from_elsewhere(tmp_path):
    probe = ("import importlib.util, json, flanforge.kernels as k; "
             f"specs = [importlib.util.find_spec(n) for n in {list(SUBPACKAGES)}]; "
             "print(json.dumps([s.origin if s else None for s in specs] + [k.__file__]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    *origins, kernels_file = json.loads(out.stdout)
    # another distribution may own a bare `kernels` or `model`: ours must never answer to those names
    assert not [o for o in origins if o and Path(o).resolve().is_relative_to(ROOT)], origins
    assert Path(kernels_file).resolve() == (ROOT / "kernels" / "__init__.py").resolve()
