"""CPU memory: keep the blocks that training frees inside the process for the next step.

glibc's malloc gives blocks over its mmap threshold (at most 32 MiB; a 64 x 32 x 64 x 64
float map is 33.5 MB) fresh pages from the kernel each time and hands them back when they are
freed, and trims the heap's free top: so every step page-faults its large tensors anew, which
can cost more than the arithmetic on them on a virtual machine (the multi-digit CNN's CPU step
191-194 -> 177 ms; docs/notes/performance.md). ``keep_freed_memory`` turns
both off for the process, as PyTorch's CPU tuning guide gets by preloading jemalloc or
tcmalloc: freed blocks are reused, the process keeps its peak memory.

A process-wide setting, so only the console script sets it: ``stnlab-train`` calls it unless
``keep_freed_memory=false``; ``stnlab.run.train.train(cfg)`` called from Python (a notebook)
leaves the process's allocator alone. Call it yourself for the same policy there."""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it (glibc ``mallopt``); True when done,
    False on another C library, which keeps its own policy."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))


__all__ = ["keep_freed_memory"]
