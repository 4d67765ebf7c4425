"""Freed host memory kept in the process while training on the CPU, so that no step faults its pages in again.

glibc's malloc returns a large block to the kernel as soon as it is freed (above its mmap threshold) and
trims the top of its heap (above its trim threshold). A training step frees and allocates the same few
hundred megabytes of activations and gradients every step, so every step the kernel maps and zeroes them
afresh: 77,541 page faults (300 MB) a step for the small shape's float32 step, 1.51 against 1.39 s a step
on an AMD EPYC Zen 4 (docs/performance.md). Raising both thresholds keeps freed blocks for the next step,
as PyTorch's caching allocator does for GPU memory; the process holds its peak until it exits, which a
training process reaches at its first step anyway. `train.host_memory=system` leaves malloc as it is.

This is not a CPU's habit but the operating system's cost, the same on every CPU; `page_faults` lets a
benchmark or `genpt doctor` show it where it runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
from collections.abc import Callable

log = logging.getLogger("genpt")

# mallopt's parameter numbers (malloc.h) and the thresholds set: blocks up to 1 GiB come from the heap,
# whose top is trimmed only above 2 GiB; where glibc refuses a threshold that high, its old cap, 32 MiB.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_TRIM = 2**31 - 1
KEEP_MMAP = (1 << 30, 32 << 20)

_kept = False


def page_faults() -> int:
    """Minor page faults of this process so far (each a fresh page mapped and zeroed by the kernel)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def faults_of(step: Callable[[], object], repeats: int = 2) -> int:
    """Page faults of the last of `repeats` calls of `step`: the earlier calls allocate what stays."""
    for _ in range(repeats - 1):
        step()
    before = page_faults()
    step()
    return page_faults() - before


def _mallopt():
    """glibc's mallopt, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Ask malloc to keep freed blocks in the process (once per process); whether it agreed."""
    global _kept
    if not _kept:
        mallopt = _mallopt()
        _kept = bool(mallopt and mallopt(M_TRIM_THRESHOLD, KEEP_TRIM)
                     and any(mallopt(M_MMAP_THRESHOLD, size) for size in KEEP_MMAP))
        log.debug("host memory: freed blocks kept in the process" if _kept else
                  "host memory: this C library has no mallopt; freed blocks go back to the system")
    return _kept


def kept() -> bool:
    """Whether this process already keeps freed blocks (keep_freed_memory has succeeded)."""
    return _kept


def apply(setting: str, device_type: str) -> bool:
    """`train.host_memory` for a run on `device_type`: keep freed memory when training on the CPU."""
    return setting == "keep" and device_type == "cpu" and keep_freed_memory()


__all__ = ["apply", "faults_of", "kept", "keep_freed_memory", "page_faults"]
