"""glibc malloc settings for a CPU embedding worker, and weights made writable at once.

A forward pass allocates and frees tens of megabytes of activations. glibc
serves blocks above its mmap threshold with fresh `mmap` pages and returns
them on free, and gives back the top of its heap above the trim threshold;
every such block is then page-faulted in again by the next batch
(docs/throughput.md has the page faults and timings measured).

`keep_freed_memory()` raises the mmap threshold to glibc's maximum (32 MiB)
and the trim threshold to 1 GiB, so freed activations stay in the process
for the next batch. A worker's memory then stays near its high-water mark
instead of shrinking between batches; the peak is the same. It changes the
whole process, so only the embed worker calls it (and the benchmark, to run
the model as the worker does). No-op where the C library is not glibc.

`prefault_for_writing(tensor)` serves code that writes into loaded weights
(the quick_gelu fold, `clip_tower`): they are memory-mapped privately from
the safetensors file, and the first write to each 4 KB page takes a
copy-on-write fault of its own. One `madvise(MADV_POPULATE_WRITE)` call
(Linux 5.14) makes the whole range private and writable in the kernel
instead; the memory is the same either way (one private copy of the pages
written). Anywhere it cannot (another OS, an older kernel, memory that is
not the CPU's) it does nothing and the writes fault page by page as before.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit
TRIM_THRESHOLD = 1 << 30
MADV_POPULATE_WRITE = 23  # <linux/mman.h>; Python 3.11's mmap module does not name it


def keep_freed_memory() -> bool:
    """Sets the thresholds above on glibc; returns whether both were taken."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only (musl has mallopt but ignores these)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    taken = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not taken:
        log.info("glibc did not take the malloc thresholds; activations are re-faulted per batch")
    return taken


def prefault_for_writing(tensor) -> bool:
    """Makes the pages under a CPU tensor private and writable in one system call;
    returns whether the kernel did (see the module docstring)."""
    if not sys.platform.startswith("linux") or tensor.device.type != "cpu" or not tensor.numel():
        return False
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return False
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    page = mmap.PAGESIZE
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first = start - start % page  # madvise takes whole pages
    return madvise(first, end - first, MADV_POPULATE_WRITE) == 0
