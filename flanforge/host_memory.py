"""Host memory the process has freed, handed back to the operating system.

glibc's allocator keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in its
heaps, so after a phase that allocates and frees many medium tensors (building a model and
casting it, DeepSpeed partitioning it into flat buffers) a CPU rank's resident memory stays at
the phase's peak. ``malloc_trim(0)`` returns the free pages. Measured on a 199M-parameter
decoder under ZeRO-3 on 2 CPU ranks: 2.5 bytes a parameter per rank after the build
(BENCHMARKS.md, "Host memory of CPU ranks").

Within a phase the same allocator costs more: each freed block of up to 32 MiB raises glibc's mmap
threshold to its size, so from then on tensors of a few MiB (a layer's weights, gradients and their
casts) come from the heap, and a heap only shrinks from its top. A CPU rank's peak RSS then stands
well above the tensors alive at any moment. :func:`malloc_tunables` fixes the threshold instead, so
that every tensor from that size up gets its own mapping and its pages go back to the OS when it is
freed, at the price of a page fault per page of every new one; the launcher gives it to CPU ranks
when ``launch.mmap_threshold`` is set (``launcher/ranks/launch.py: rank_env``). Measured on 2 CPU
ranks (a 76.6M-parameter decoder, fp32, BENCHMARKS.md "Host memory of CPU ranks"): at 1 MiB the peak
RSS is 0.79-0.80x (ZeRO-1) and 0.74-0.76x (ZeRO-3) of glibc's default, the speed 0.80-0.87x. A leaf
module: it imports nothing of the project.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

NO_LIMIT = 2**60
"""A cgroup limit at or above this is no limit (cgroup v1 writes "unlimited" as a page-rounded 2**63 - 1)."""


def malloc_tunables(threshold: int, current: str = "") -> str:
    """``GLIBC_TUNABLES`` with glibc's mmap threshold fixed at ``threshold`` bytes, after ``current``'s
    other tunables."""
    kept = [t for t in current.split(":") if t and not t.startswith("glibc.malloc.mmap_threshold=")]
    return ":".join([*kept, f"glibc.malloc.mmap_threshold={threshold}"])


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, not macOS)


def release_freed_memory() -> bool:
    """Return the allocator's free pages to the OS; False where the C library cannot (nothing done)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def node_memory() -> int:
    """Bytes of RAM this process and its children may use: the machine's, or less where its cgroup caps
    it (a Slurm job's ``--mem``, a container's limit)."""
    import psutil

    total = psutil.virtual_memory().total
    limit = cgroup_memory_limit()
    return total if limit is None else min(total, limit)


def cgroup_memory_limit(cgroups: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) in
    bytes; None when there is none or it cannot be read."""
    try:
        lines = Path(cgroups).read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:  # cgroup v2
            candidates += [f"{root}{path}/memory.max", f"{root}/unified{path}/memory.max"]
        elif "memory" in controllers.split(","):  # cgroup v1
            candidates += [f"{root}/memory{path}/memory.limit_in_bytes", f"{root}/memory/memory.limit_in_bytes"]
    for candidate in candidates:
        try:
            value = Path(candidate).read_text().strip()
        except OSError:
            continue
        return int(value) if value.isdigit() and int(value) < NO_LIMIT else None
    return None
