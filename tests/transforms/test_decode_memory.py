"""Decode memory and pixels for any aspect ratio (issue 14: a 202-byte PNG of
40000x1 pixels took 7.9 GB, because its short side was resized to 224 first)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import encode, random_image
from transforms.decode import MAX_RESIZED_ASPECT, decode_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in a fresh interpreter so its peak RSS is the decode's alone. The
# address-space cap turns the old gigabytes into a quick MemoryError instead of
# taking the test machine's memory.
_CHILD = r"""
import io, json, resource, sys, time
import numpy as np
from PIL import Image
from transforms.decode import DecodeError, decode_image

limit = 2 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
w, h, fmt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def encoded(w, h):
    ramp = (np.arange(w * h) % 256).astype(np.uint8).reshape(h, w)
    buf = io.BytesIO()
    Image.fromarray(np.stack([ramp] * 3, axis=-1), "RGB").save(buf, fmt)
    return buf.getvalue()
data = encoded(w, h)
decode_image(encoded(64, 48), size=int(sys.argv[4]))  # loads the codec before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    pixels, _, _ = decode_image(data, size=int(sys.argv[4]))
    result = {"shape": list(pixels.shape)}
except DecodeError as exc:
    result = {"error": str(exc)}
result.update(bytes=len(data), seconds=time.monotonic() - started,
              grew_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
print(json.dumps(result))
"""


def _decode_in_child(w: int, h: int, fmt: str, size: int = 224) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(w), str(h), fmt, str(size)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("w,h,fmt", [(40000, 1, "PNG"), (1, 40000, "PNG"),
                                     (40000, 1, "JPEG"), (1, 40000, "JPEG")])
def test_extreme_aspect_ratio_decodes_in_bounded_memory(w, h, fmt):
    result = _decode_in_child(w, h, fmt)
    assert result.get("shape") == [224, 224, 3], result
    # The crop itself is 147 KiB; the old code needed gigabytes here.
    assert result["grew_kib"] < 64 * 1024, result
    assert result["seconds"] < 10, result


def _whole_image_resize_then_crop(img: Image.Image, size: int) -> np.ndarray:
    """CLIP's geometry written out the direct way: shortest side to `size`, centre crop."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    return np.asarray(resized.crop((left, top, left + size, top + size)))


def _detailed(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(random_image(seed, size)).astype(np.int16)
    arr = arr + rng.integers(-40, 40, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("w,h", [(400, 300), (300, 400), (1000, 237), (97, 61), (224, 224),
                                 (300, 224), (16 * 224, 224)])
def test_ordinary_images_keep_their_exact_pixels(w, h):
    img = _detailed(w * h, (w, h))
    pixels, _, _ = decode_image(encode(img, "PNG"), size=224)
    np.testing.assert_array_equal(pixels, _whole_image_resize_then_crop(img, 224))


@pytest.mark.parametrize("w,h,size", [(4000, 200, 224), (200, 4000, 224), (3000, 40, 64),
                                      (17 * 224 + 1, 224, 224)])
def test_cropped_resampling_matches_the_whole_image_resize(w, h, size):
    assert max(w, h) * size / min(w, h) > MAX_RESIZED_ASPECT * size  # the bounded path
    img = _detailed(w + h, (w, h))
    pixels, _, _ = decode_image(encode(img, "PNG"), size=size)
    reference = _whole_image_resize_then_crop(img, size).astype(int)
    assert np.abs(pixels.astype(int) - reference).max() <= 2
