"""Freed heap memory goes back to the OS when asked: resident memory falls by what was freed."""

import os
import subprocess
import sys

import pytest

from flanforge.host_memory import cgroup_memory_limit, malloc_tunables

PROGRAM = """
import sys
from flanforge.host_memory import release_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

big = b"x" * (16 * 2**20)
del big  # an mmapped block freed: glibc raises its mmap threshold to 16 MiB
blocks = [b"x" * 2**20 for _ in range(300)]  # 300 MiB on the heap, every page written
keep = blocks[-1]  # the heap's top stays in use, so free() alone cannot shrink it
del blocks
before = rss_mib()
done = release_freed_memory()
print(done, before, rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_is_returned():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True).stdout.split()
    done, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert done
    assert before - after > 250, (before, after)  # of the 299 MiB freed



WITHOUT_TRIM = """
import os

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

big = b"x" * (16 * 2**20)
del big  # by default glibc now serves blocks up to 16 MiB from its heap
blocks = [b"x" * (8 * 2**20) for _ in range(40)]  # 320 MiB in 8 MiB blocks, as a layer's tensors
keep = blocks[-1]
before = rss_mib()
del blocks
print(before, rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's tunables")
@pytest.mark.parametrize("tunables", ["", malloc_tunables(2**20)])
def test_a_fixed_mmap_threshold_gets_freed_tensors_pages_back_without_a_trim(tunables):
    env = {**os.environ, "GLIBC_TUNABLES": tunables}
    out = subprocess.run([sys.executable, "-c", WITHOUT_TRIM], capture_output=True, text=True, check=True, env=env)
    before, after = map(float, out.stdout.split())
    if tunables:  # every 8 MiB block had its own mapping: 39 of 40 went back at once
        assert before - after > 280, (before, after)
    else:  # glibc's default keeps them in the heap below the one still alive: what the setting fixes
        assert before - after < 40, (before, after)


def test_the_launcher_fixes_cpu_ranks_threshold_when_configured_keeping_other_tunables(monkeypatch):
    from flanforge.launcher.config import load_config
    from flanforge.launcher.ranks.launch import rank_env

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert "GLIBC_TUNABLES" not in rank_env(load_config(None, ["launch.device=cpu"]))
    lean = load_config(None, ["launch.device=cpu", "launch.mmap_threshold=1MiB"])
    assert rank_env(lean)["GLIBC_TUNABLES"] == "glibc.malloc.mmap_threshold=1048576"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536")
    assert rank_env(lean)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576"


@pytest.mark.parametrize("cgroups,files,limit", [
    ("0::/job_7\n", {"job_7/memory.max": "68719476736\n"}, 64 * 2**30),  # cgroup v2, a Slurm job's --mem=64G
    ("0::/job_7\n", {"job_7/memory.max": "max\n"}, None),
    ("4:memory:/slurm/job_7\n1:cpu:/\n", {"memory/slurm/job_7/memory.limit_in_bytes": "1073741824"}, 2**30),  # v1
    ("4:memory:/box\n", {"memory/box/memory.limit_in_bytes": "9223372036854771712"}, None),  # v1's "unlimited"
    ("0::/gone\n", {}, None),
])
def test_the_cgroup_memory_limit_caps_the_nodes_ram(tmp_path, cgroups, files, limit):
    (tmp_path / "cgroup").write_text(cgroups)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    assert cgroup_memory_limit(str(tmp_path / "cgroup"), str(tmp_path / "fs")) == limit

