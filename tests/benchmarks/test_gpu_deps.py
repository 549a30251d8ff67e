"""benchmarks/gpu/deps.py: a missing wheel is named with the command that makes it; flanforge
is importable from the --target folder without a build."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_deps", ROOT / "benchmarks" / "gpu" / "deps.py")
deps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(deps)


def test_a_missing_package_is_named_with_the_command_for_its_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(deps, "CHECKED_IMPORTS", ("json", "yaml", "no_such_module_for_flanforge"))
    lines = deps.problems(tmp_path, tmp_path / "wheels")
    assert lines == [
        f"missing Python package no-such-module-for-flanforge (import no_such_module_for_flanforge failed) and no "
        f"wheel for it in {tmp_path / 'wheels'}/: make it with `pip download --no-deps --only-binary=:all: -d "
        f"{tmp_path / 'wheels'} no-such-module-for-flanforge` (README: GPU checks)"
    ]


def test_wheel_commands_pin_the_tested_versions():
    assert deps.wheel_command("liger-kernel", Path(".whl")) == (
        "pip download --no-deps --only-binary=:all: -d .whl liger-kernel==0.8.5")
    # DeepSpeed is published as a source distribution only.
    assert deps.wheel_command("deepspeed", Path(".whl")) == (
        f"DS_BUILD_OPS=0 pip wheel --no-deps -w .whl deepspeed=={deps.pinned()['deepspeed']}")


def test_flanforge_is_linked_into_the_target(tmp_path):
    deps.link_flanforge(tmp_path)
    probe = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
             "import flanforge, flanforge.kernels.cross_entropy.options as o; print(flanforge.__file__); print(o.__file__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]).parent == tmp_path / "flanforge"  # the target's package, not this venv's editable install
    assert Path(out[1]).resolve() == ROOT / "kernels" / "cross_entropy" / "options.py"
