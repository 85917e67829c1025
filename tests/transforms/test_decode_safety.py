"""`decode_image` on valid, unusual and mutated bytes: an RGB array or a typed DecodeError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tools import hostile_corpus as hc
from transforms import records as R
from transforms.decode import DecodeError, decode_image

SIZE = 32
KNOWN_REASONS = {R.EMPTY_FILE, R.TRUNCATED, R.CORRUPT, R.UNIDENTIFIED, R.UNSUPPORTED_FORMAT,
                 R.TOO_LARGE}
SEEDS = {name: make(7) for name, make in hc.VALID_VARIANTS.items()}


@pytest.mark.parametrize("variant", sorted(hc.VALID_VARIANTS))
def test_valid_variants_decode_to_rgb(variant):
    pixels, w, h = decode_image(SEEDS[variant], SIZE)
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8
    assert (w, h) == ((64, 96) if variant == "jpeg_exif_rotated" else (96, 64))


@pytest.mark.parametrize("kind", sorted(hc.BROKEN_IMAGES))
def test_broken_kinds_raise_their_reason(kind):
    make, stage, reason = hc.BROKEN_IMAGES[kind]
    if stage != hc.DECODE:
        reason = R.EMPTY_FILE  # the reader reports these; the decoder agrees
    with pytest.raises(DecodeError) as info:
        decode_image(make(3), SIZE, hc.MAX_IMAGE_PIXELS)
    assert info.value.reason == reason


def test_16bit_is_scaled_not_clipped():
    arr = np.full((40, 40), 30000, np.uint16)  # ~46% grey; clipping would give white
    pixels, _, _ = decode_image(hc.encode(Image.fromarray(arr), "PNG"), SIZE)
    assert abs(int(pixels[0, 0, 0]) - round(30000 / 65535 * 255)) <= 1


def test_transparency_is_composited_on_white():
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # red hidden under full transparency
    pixels, _, _ = decode_image(hc.encode(img, "PNG"), SIZE)
    assert pixels.min() == 255


def test_animated_image_uses_frame_zero():
    frames = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 255), (255, 0, 0))]
    data = hc.encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels, _, _ = decode_image(data, SIZE)
    assert pixels[..., 2].min() > 200 and pixels[..., 0].max() < 50


def test_bomb_rejected_before_pixels_are_allocated():
    with pytest.raises(DecodeError) as info:
        decode_image(hc.BROKEN_IMAGES["decompression_bomb"][0](1), SIZE)
    assert info.value.reason == R.TOO_LARGE


_SOURCES = sorted(SEEDS.values(), key=len)


@st.composite
def mutated_image_bytes(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(_SOURCES)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[pos:pos + draw(st.integers(1, 64))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(mutated_image_bytes())
def test_mutated_bytes_give_rgb_or_typed_error(data):
    try:
        pixels, w, h = decode_image(data, SIZE, 4_000_000)
    except DecodeError as exc:
        assert exc.reason in KNOWN_REASONS, exc
        return
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
    assert pixels.shape == (SIZE, SIZE, 3) and w > 0 and h > 0


def test_decoding_in_threads_leaves_the_warning_filters_as_they_were():
    """Decoding threads (decode_overlap false) swap the process-wide warning
    filter around open(); unserialised, an exit restores another thread's
    filter and leaves it behind for good."""
    import sys
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    small = hc.encode(Image.new("RGB", (8, 8)), "PNG")
    over_cap = hc.encode(Image.new("RGB", (40, 40)), "PNG")  # cap 1000 < 1600 < 2x the cap

    def decode(i):
        try:
            decode_image(over_cap if i % 2 else small, 8, max_pixels=1000)
            return "ok"
        except DecodeError as exc:
            return exc.reason

    before, interval = list(warnings.filters), sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside the window too
    try:
        with ThreadPoolExecutor(8) as pool:
            reasons = list(pool.map(decode, range(4000)))
    finally:
        sys.setswitchinterval(interval)
    assert warnings.filters == before
    assert reasons == ["ok", R.TOO_LARGE] * 2000
