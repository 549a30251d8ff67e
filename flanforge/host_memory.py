"""Host memory the process has freed, handed back to the operating system.

glibc's allocator keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold in its
heaps, so after a phase that allocates and frees many medium tensors (building a model and
casting it, DeepSpeed partitioning it into flat buffers) a CPU rank's resident memory stays at
the phase's peak. ``malloc_trim(0)`` returns the free pages. Measured on a 199M-parameter
decoder under ZeRO-3 on 2 CPU ranks: 2.5 bytes a parameter per rank after the build
(BENCHMARKS.md, "Host memory of CPU ranks"). A leaf module: it imports nothing of the project.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


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
