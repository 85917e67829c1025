"""A 64-bit perceptual hash (pHash) of a decoded image, and Hamming distances.

The DCT recipe imagededup and imagehash use: the image in greyscale (ITU-R
601 luma, Pillow's `L`), resized to 32x32 with a Lanczos filter, a 2-D DCT-II,
the 8x8 lowest frequencies, each bit set where the coefficient is at least the
median of those 64 (imagededup leaves the DC term out of the median; so do
we: one very bright or dark image would otherwise set every bit alike).

What the decode stage adds is the input: `perceptual_hash` is given the
decoded RGB image (EXIF orientation applied, transparency composited on
white, 16-bit data scaled), the whole picture before the model's centre
crop. So a transparent PNG and its flattened copy, or a photo and its
rotated-by-EXIF copy, hash alike, where hashing the stored pixels does not.

Hashes are stored as int64: the 64 bits read as a two's-complement integer
(`as_unsigned` gives them back as uint64). Bit 63 is the first coefficient in
row-major order.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_SIZE = 8  # bits per side: 64 bits
RESIZED = 32  # side of the greyscale image the DCT is taken on
_WEIGHTS = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))


def _dct_matrix(n: int) -> np.ndarray:
    """The unnormalised DCT-II as a matrix (scipy.fftpack.dct(x, type=2), norm=None)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(RESIZED)[:HASH_SIZE]  # only the rows the hash keeps


def hash_bits(gray32: np.ndarray) -> np.ndarray:
    """The 64 hash bits (bool [8, 8]) of a 32x32 greyscale array."""
    coefficients = _DCT @ np.asarray(gray32, dtype=np.float64) @ _DCT.T
    flat = coefficients.ravel()
    return (coefficients >= np.median(flat[1:])).reshape(HASH_SIZE, HASH_SIZE)


def bits_to_int64(bits: np.ndarray) -> int:
    """64 bools (row-major) -> the signed int64 the embeddings table stores."""
    value = int(np.sum(_WEIGHTS[np.asarray(bits, bool).ravel()], dtype=np.uint64))
    return value - (1 << 64) if value >= 1 << 63 else value


def perceptual_hash(image: Image.Image) -> int:
    """The pHash of a decoded image (any mode Pillow converts to `L`), as int64.

    Large images are first reduced by whole factors (`reducing_gap`), which
    keeps the cost per image small and changes the 32x32 result by rounding
    only.
    """
    gray = image.convert("L") if image.mode != "L" else image
    small = gray.resize((RESIZED, RESIZED), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return bits_to_int64(hash_bits(np.asarray(small, dtype=np.float64)))


def pixels_hash(pixels: np.ndarray) -> int:
    """The pHash of a uint8 [H, W, 3] (or [H, W]) array."""
    return perceptual_hash(Image.fromarray(np.ascontiguousarray(pixels)))


def as_unsigned(hashes) -> np.ndarray:
    """int64 hashes (a scalar, list or array) -> the same 64 bits as uint64."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)


def hamming(a, b) -> np.ndarray:
    """Bits that differ between int64/uint64 hashes `a` and `b` (broadcast)."""
    x = np.bitwise_xor(as_unsigned(a), as_unsigned(b))
    return np.bitwise_count(x).astype(np.int32)
