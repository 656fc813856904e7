"""The C allocator's settings for batch jobs (replay, backtest) that stream a large file.

A replay hands blocks of a few MB from thread to thread: the text read, its parsed columns,
their numbers. glibc's malloc serves each of those from fresh pages (an `mmap` per block,
or heap memory it gives back at once on free), so every block costs page faults: about
60,000 for a 150 MB dump, 0.1-0.2 s of system time. `keep_freed_memory` raises both
thresholds so that a freed block stays in the heap and serves the next one; peak memory is
unchanged (the same blocks are alive at once), only the pages are reused. Long-running
services (`up`, `demo`) keep glibc's defaults, which give memory back to the system.

On a C library other than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
from typing import Final

_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
# glibc's ceiling for the mmap threshold on 64-bit systems: blocks up to it come from the heap
MMAP_THRESHOLD: Final = 32 << 20
# free memory at the top of the heap kept, not given back: a few blocks' worth
TRIM_THRESHOLD: Final = 128 << 20


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed blocks instead of giving them back; True when it took both."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the running program's C library
    except (OSError, AttributeError):  # not glibc: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    took_mmap: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    took_trim: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return took_mmap and took_trim
