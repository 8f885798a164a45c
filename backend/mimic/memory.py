"""How the process keeps memory it has freed. The audio encoder allocates and frees the same large
activations for every batch of windows (hundreds of MB at full size). glibc's malloc hands each
freed block above its mmap threshold back to the system and trims the top of its heap, so every
batch pages its memory in again: a fifth to a quarter of the encoder's time on a 2-core CPU
(BENCHMARKS.md). Raising both thresholds keeps that memory for the next batch, at the price of
holding the process's peak until it exits (`mimic serve` stops when idle)."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks below it come from the heap and stay (32 MB, glibc's own ceiling, is too low)
TRIM_THRESHOLD = 2 << 30  # free memory the heap keeps at its top before giving any back


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
