"""keep_freed_memory: freed activations are reused, not page-faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from transforms.embed import allocator

# Runs in a child: the settings are process-wide. Prints the minor page
# faults of five 10 MB allocate-touch-free rounds after one warm-up round.
CHILD = """
import ctypes, resource, sys
from transforms.embed import allocator
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
# A fixed 128 KiB mmap threshold: every 10 MB block is mmapped afresh
# (glibc's adaptive default does that only some of the time).
libc.mallopt(allocator.M_MMAP_THRESHOLD, 128 << 10)
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
def rounds(n):
    for _ in range(n):
        block = libc.malloc(10 << 20)
        ctypes.memset(block, 1, 10 << 20)
        libc.free(block)
rounds(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(5)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True,
                         text=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings")
def test_freed_blocks_are_reused_without_page_faults():
    if subprocess.run([sys.executable, "-c", "import ctypes; ctypes.CDLL(None).gnu_get_libc_version"],
                      capture_output=True).returncode:
        pytest.skip("not glibc")
    assert _faults("mmap") > 5 * 2000  # 10 MB is 2560 pages: the probe sees the faults
    assert _faults("keep") < 100


def _private_mapping(path, values):
    import numpy as np
    import torch

    np.asarray(values, dtype=np.float32).tofile(path)
    return torch.from_file(str(path), shared=False, size=len(values), dtype=torch.float32)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE is Linux's")
def test_prefaulted_weights_keep_their_values_and_their_file(tmp_path):
    import torch

    values = [float(i) for i in range(100_000)]
    weights = _private_mapping(tmp_path / "w.bin", values)
    made = allocator.prefault_for_writing(weights)
    release = tuple(int(part) for part in os.uname().release.split(".")[:2])
    assert made or release < (5, 14)  # older kernels: nothing done, nothing lost
    assert weights.tolist() == values
    weights.mul_(2)
    assert weights[12_345].item() == 24_690.0
    assert _private_mapping(tmp_path / "again.bin", values).tolist() == values
    assert torch.from_file(str(tmp_path / "w.bin"), size=len(values)).tolist() == values


def test_nothing_is_done_where_there_is_no_cpu_memory():
    import torch

    assert not allocator.prefault_for_writing(torch.empty(0))
    assert not allocator.prefault_for_writing(torch.empty(10, device="meta"))
