"""Make a bare GPU machine's Python run flanforge: wheels from ``.whl/`` into a ``--target`` folder.

    python benchmarks/gpu/deps.py [--wheels .whl] [--target .gpu-deps]

The machine's Python already has torch, triton and transformers; everything
else (``wheels.txt``) comes as wheels, installed with ``pip install --no-index
--no-deps --target``. flanforge itself is mapped in without a build: the target
gets a ``flanforge`` package whose subpackages link to the repository's
top-level folders, as ``setup.py`` maps them. Then every module the GPU stages
import is imported once; a missing one is reported with the package and the
command that makes its wheel, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS_FILE = Path(__file__).with_name("wheels.txt")
# What the stages import (flanforge's modules pull in the rest).
CHECKED_IMPORTS = ("deepspeed", "webdataset", "datasets", "liger_kernel", "pytest",
                   "flanforge.launcher.training.loop", "flanforge.launcher.training.data", "flanforge.kernels")
# Import names that differ from the package name.
PACKAGE_OF = {"yaml": "pyyaml", "cpuinfo": "py-cpuinfo", "google": "protobuf", "dateutil": "python-dateutil",
              "PIL": "pillow", "absl": "absl-py", "liger_kernel": "liger-kernel", "pynvml": "nvidia-ml-py",
              "tensorboard_data_server": "tensorboard-data-server", "sentencepiece": "sentencepiece"}


def pinned() -> dict[str, str]:
    """Package name -> version, from wheels.txt."""
    lines = (line.split("#")[0].strip() for line in WHEELS_FILE.read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


def wheel_command(package: str, wheels: Path) -> str:
    """The command that puts ``package``'s wheel into ``wheels`` (run where there is internet)."""
    spec = f"{package}=={pinned()[package]}" if package in pinned() else package
    if package == "deepspeed":  # published as a source distribution only: build the wheel
        return f"DS_BUILD_OPS=0 pip wheel --no-deps -w {wheels} {spec}"
    return f"pip download --no-deps --only-binary=:all: -d {wheels} {spec}"


def install(wheels: Path, target: Path) -> int:
    """pip-install every wheel in ``wheels`` into ``target``; returns how many."""
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if found:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--upgrade",
                        "--target", str(target), *map(str, found)], check=True)
    return len(found)


def link_flanforge(target: Path) -> None:
    """``target/flanforge``: the repository's flanforge/__init__.py plus links to its subpackage folders."""
    setup_src = (ROOT / "setup.py").read_text()
    subpackages = ast.literal_eval(re.search(r"SUBPACKAGES = (\(.*?\))", setup_src).group(1))
    package = target / "flanforge"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    shutil.copy(ROOT / "flanforge" / "__init__.py", package / "__init__.py")
    for name in subpackages:
        (package / name).symlink_to(ROOT / name, target_is_directory=True)


def missing_modules(target: Path) -> list[str]:
    """Top-level modules that fail to import (in a fresh interpreter with ``target`` first on the path)."""
    probe = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "missing = []\n"
        f"for name in {CHECKED_IMPORTS!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as err:\n"
        "        missing.append((err.name or name).split('.')[0])\n"
        "print(json.dumps(sorted(set(missing))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"import check failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def problems(target: Path, wheels: Path) -> list[str]:
    """One line per missing package: which, and the command that makes its wheel."""
    lines = []
    for module in missing_modules(target):
        package = PACKAGE_OF.get(module, module.replace("_", "-"))
        lines.append(f"missing Python package {package} (import {module} failed) and no wheel for it in {wheels}/: "
                     f"make it with `{wheel_command(package, wheels)}` (README: GPU checks)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    parser.add_argument("--target", type=Path, default=ROOT / ".gpu-deps")
    args = parser.parse_args(argv)
    args.target.mkdir(parents=True, exist_ok=True)
    count = install(args.wheels, args.target)
    link_flanforge(args.target)
    found = problems(args.target, args.wheels)
    for line in found:
        print(line, file=sys.stderr)
    print(json.dumps({"stage": "deps", "status": "failed" if found else "ok", "wheels_installed": count,
                      "target": str(args.target), "missing": len(found)}))
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
