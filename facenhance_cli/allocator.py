"""The C allocator for a heavy command: freed memory is kept for reuse, not handed back to the kernel.

glibc's malloc serves a block above its mmap threshold (128 KiB, rising with use to at most 32 MiB) with
fresh pages from mmap and unmaps them on free. A 192x192 network's activations are megabytes per frame, so
every call page-faulted its tensors in again, zero-filled by the kernel: on the 2-core development
machine (benchmarks/bench_batch.py, torch fp32) 21 s of system time in 41 s of wall, and a call of 16
frames took twice as long per frame as with this setting (1.5 s of system time). Here mmap is turned off
(large blocks come from the heap, which falls back to mmap by itself when it cannot grow) and the heap's
top is trimmed only beyond 2 GiB of free memory. Set FACENHANCE_MALLOC=system for glibc's defaults; any
malloc setting of the user's own (GLIBC_TUNABLES, MALLOC_*_ variables) is kept as it is.
"""

from __future__ import annotations

import ctypes
import os
import platform

MALLOC_ENV = "FACENHANCE_MALLOC"
# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest value mallopt's int takes


def user_malloc_settings(environ: dict[str, str] | os._Environ[str]) -> bool:
    """True when the environment already tunes glibc's malloc (or asks for its defaults)."""
    if environ.get(MALLOC_ENV, "").strip().lower() == "system":
        return True
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return True
    return any(name.startswith("MALLOC_") and name.endswith("_") for name in environ)


def reuse_freed_memory(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Turn glibc's mmap-per-tensor off and stop trimming the heap; True when the setting took effect."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_malloc_settings(environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
