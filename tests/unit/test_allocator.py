"""Batch jobs reuse freed blocks instead of taking fresh pages for each (flows.allocator)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from flows.allocator import keep_freed_memory

# blocks made and freed in turn, each a little larger than the one before (a replay's blocks
# of whole lines vary in size; glibc mmaps any block larger than every one freed so far): the
# minor page faults they cost, i.e. first touches of fresh pages
_CHURN = """
import resource, sys
from flows.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(40):
    block = bytearray((4 << 20) + i * 65536)  # zeroed: every page touched
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_blocks_serve_the_next_ones() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    assert default > 40 * 1000  # glibc's default: fresh pages for every block (1,024 each)
    assert tuned < default / 10  # kept: only the first block's pages are new


def test_it_says_whether_it_took() -> None:
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
