"""Freed heap memory goes back to the OS when asked: resident memory falls by what was freed."""

import subprocess
import sys

import pytest

from flanforge.host_memory import release_freed_memory

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

