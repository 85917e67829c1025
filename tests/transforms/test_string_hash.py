"""`string_hashes`: the same string, the same hash, however Arrow holds it."""

import numpy as np
import pyarrow as pa
import pytest

from transforms.string_hash import _LENGTH, _WEIGHTS, string_hashes

WORDS = ["", "a", "b", "ab", "ba", "é", "a" * 63, "a" * 64, "a" * 65, "0123456789abcdef0123",
         "x" * 200 + "y", "y" + "x" * 200]


def test_equal_strings_hash_equal_however_they_are_held():
    want = dict(zip(WORDS, string_hashes(pa.array(WORDS)).tolist()))
    doubled = WORDS[::-1] + WORDS
    chunked = pa.chunked_array([pa.array(doubled[:5]), pa.array(doubled[5:])])
    for held in (pa.array(doubled, pa.large_string()), chunked,
                 pa.array(["pad"] * 3 + doubled).slice(3)):
        assert string_hashes(held).tolist() == [want[w] for w in doubled]


def test_different_strings_spread():
    words = [f"{i:020x}" for i in range(100_000)] + WORDS
    h = string_hashes(pa.array(words))
    assert len(set(WORDS)) == len(WORDS) and np.unique(h).size == len(words)
    counts = np.bincount((h % np.uint64(64)).astype(np.int64), minlength=64)
    assert counts.min() > 0.8 * len(words) / 64 and counts.max() < 1.2 * len(words) / 64


def _reference(word: str) -> int:
    """The hash in Python integers: sum of (byte + 1) * weight of its position, modulo
    2^64, with the length folded in, through splitmix64's finaliser."""
    m = (1 << 64) - 1
    data = word.encode()
    x = sum((byte + 1) * int(_WEIGHTS[k % 64]) for k, byte in enumerate(data)) & m
    x ^= (len(data) * int(_LENGTH)) & m
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & m
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


@pytest.mark.parametrize("words", [WORDS, ["a" * 70] * 3 + ["b" * 70], [f"{i:020x}" for i in range(50)],
                                   [""] * 3])
def test_the_vectorised_hash_is_the_arithmetic_it_says(words):
    # mixed lengths take the per-byte path, one length the per-column one
    assert string_hashes(pa.array(words)).tolist() == [_reference(w) for w in words]


def test_nulls_are_refused():
    with pytest.raises(ValueError, match="null"):
        string_hashes(pa.array(["a", None]))
