"""A 64-bit hash of every string of an Arrow array, computed on its buffers with numpy.

Arrow's compute functions have no hash of a string, and Python's `hash` is
salted per process, so two workers of one job would disagree. This one is
plain integer arithmetic on the UTF-8 bytes: the same string gives the same
value in every process. It spreads keys over buckets (`transforms.diff`);
nothing relies on it being free of collisions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# One odd multiplier per byte position (modulo 64): bytes in another order give
# another sum.
_WEIGHTS = np.random.default_rng(0x5EED).integers(1, 1 << 63, size=64, dtype=np.uint64) | np.uint64(1)
_LENGTH = np.uint64(0x9E3779B97F4A7C15)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def string_hashes(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """`[len(strings)]` uint64: a hash of each string (no nulls allowed)."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    strings = strings.cast(pa.large_string())  # 64-bit offsets, whatever came in
    if strings.null_count:
        raise ValueError("cannot hash a null string")
    n = len(strings)
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64, count=n + 1, offset=strings.offset * 8)
    ends = offsets - offsets[0]
    size = int(ends[-1])
    data = (np.frombuffer(data_buf, np.uint8, count=size, offset=int(offsets[0]))
            if size else np.empty(0, np.uint8))
    lengths = np.diff(ends)
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64 is the point
        if n and (lengths == lengths[0]).all():
            sums = _equal_lengths(data.reshape(n, int(lengths[0])))
        else:
            position = np.arange(size) - np.repeat(ends[:-1], lengths)
            terms = (data.astype(np.uint64) + np.uint64(1)) * _WEIGHTS[position % 64]
            running = np.zeros(size + 1, np.uint64)
            np.cumsum(terms, out=running[1:])
            sums = running[ends[1:]] - running[ends[:-1]]
        return mix(sums ^ (lengths.astype(np.uint64) * _LENGTH))


def _equal_lengths(data: np.ndarray) -> np.ndarray:
    """The byte sums of `[n, length]` strings of one length (ids usually are), a column
    of bytes at a time: the same sums, without the per-byte position arrays."""
    sums = np.zeros(data.shape[0], np.uint64)
    for k in range(data.shape[1]):
        sums += (data[:, k].astype(np.uint64) + np.uint64(1)) * _WEIGHTS[k % 64]
    return sums
