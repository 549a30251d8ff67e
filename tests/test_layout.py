"""The package layout: ``flanforge.*`` resolves to files for static tools, no bare
``launcher``/``mixtures``/``model``/``kernels`` module is importable from an installed flanforge,
and the whole import graph follows ARCHITECTURE.md (its layer table, no cycles, its module map)."""

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


ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def _section(title: str) -> list[str]:
    """The indented block under ARCHITECTURE.md's ``## title`` (its table or map), one line each."""
    lines = ARCHITECTURE.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    return [line.strip() for line in lines if line.startswith("    ") and line.strip()]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
    return ".".join(parts) if parts[0] == "flanforge" else ".".join(["flanforge", *parts])


def _code_files() -> list[Path]:
    return sorted([*(ROOT / "flanforge").glob("*.py"), *(p for folder in SUBPACKAGES for p in (ROOT / folder).rglob("*.py"))])


def _graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (lazy imports count; ``from pkg import mod`` is ``pkg.mod``)."""
    files = {_module_name(p): p for p in _code_files()}
    graph = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package this module is in
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {m for m in edges if m in files and m != name}
    return graph


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in SUBPACKAGES:
        return "leaves"
    if parts[1] != "launcher":
        return parts[1]
    if len(parts) > 2 and parts[2] in ("ranks", "training", "export", "planning", "evaluation", "commands", "cli"):
        return f"launcher.{parts[2]}"
    return "launcher.config"


def _allowed() -> dict[str, set[str]]:
    """ARCHITECTURE.md's layer table: layer -> the layers it may import."""
    rows = _section("Layers")[1:]  # the header row names the columns
    table = {}
    for row in rows:
        layer, _, imports = row.partition(" ")
        table[layer] = {name.strip() for name in imports.split(",") if name.strip() and "(" not in name}
    return table


def test_the_architecture_document_names_every_layer():
    assert set(_allowed()) == {layer_of(m) for m in _graph()}


def test_imports_go_one_way_as_the_architecture_says():
    allowed = _allowed()
    against = sorted(f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, targets in _graph().items()
                     for b in targets if layer_of(a) != layer_of(b) and layer_of(b) not in allowed[layer_of(a)])
    assert against == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycles():
    graph = _graph()
    assert len(graph) > 80  # the walk saw the code base
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check can fail


def test_the_module_map_covers_every_module_and_names_only_real_ones():
    entries = [line.split()[0] for line in _section("Module map")]
    assert [e for e in entries if not (ROOT / e).exists()] == []
    covered = lambda path: any(path == e or (e.endswith("/") and path.startswith(e)) for e in entries)  # noqa: E731
    assert [str(p.relative_to(ROOT)) for p in _code_files() if not covered(str(p.relative_to(ROOT)))] == []


def test_leaf_modules_import_nothing_of_ours_but_the_errors():
    """flanforge/*.py: each imports nothing of the project, except flanforge.errors (itself a pure leaf)."""
    assert _imports(ROOT / "flanforge" / "errors.py") == set()
    for path in (ROOT / "flanforge").glob("*.py"):
        assert _imports(path) <= {"flanforge.errors"}, path.name


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


@pytest.mark.parametrize("runner", [["-m", "pytest"], None])
def test_pytest_runs_from_the_repository_root(runner):
    """``python -m pytest`` (the root first on sys.path) and ``pytest`` both import transformers (which
    probes the PyPI ``kernels``) and our relative test imports, with pytest.ini's options."""
    cmd = [sys.executable, *runner] if runner else [str(Path(sys.executable).with_name("pytest"))]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    out = subprocess.run([*cmd, "-q", "tests/model/test_training_forward.py", "tests/test_tiers.py", "-k",
                          "not fused and not gradient"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
