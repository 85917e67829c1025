import numpy as np
import pytest
from PIL import Image

from tests.conftest import encode, random_image
from transforms import records as R
from transforms.decode import DecodeError, decode_image


def _reason(data, **kw):
    with pytest.raises(DecodeError) as info:
        decode_image(data, **kw)
    return info.value.reason


def test_decodes_to_square_rgb_with_original_size():
    pixels, w, h = decode_image(encode(random_image(0, (400, 300))), size=224)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert (w, h) == (400, 300)


def test_large_jpeg_uses_draft_and_keeps_size():
    pixels, w, h = decode_image(encode(random_image(0, (3000, 2000))), size=224)
    assert (w, h) == (3000, 2000) and pixels.shape == (224, 224, 3)


def test_exif_orientation_applied():
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    pixels, w, h = decode_image(encode(img, exif=exif.tobytes()), size=64)
    assert (w, h) == (100, 200)
    assert pixels[5, 32, 2] > 200 and pixels[-5, 32, 0] > 200  # blue on top after rotation


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.full((64, 64), 32768, dtype=np.uint16)
    img = Image.fromarray(arr)
    pixels, _, _ = decode_image(encode(img, "PNG"), size=32)
    assert 120 <= pixels.mean() <= 135


def test_transparency_composited_on_white():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # black hidden under transparency
    pixels, _, _ = decode_image(encode(rgba, "PNG"), size=32)
    assert pixels.min() == 255


@pytest.mark.parametrize("data,reason", [
    (b"", R.EMPTY_FILE),
    (b"<html>nope</html>", R.UNIDENTIFIED),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", R.UNSUPPORTED_FORMAT),
    (b"%PDF-1.4 ...", R.UNSUPPORTED_FORMAT),
])
def test_bad_bytes_have_reasons(data, reason):
    assert _reason(data) == reason


def test_truncated_jpeg():
    data = encode(random_image(0, (300, 300)), quality=95)
    assert _reason(data[: len(data) // 2]) == R.TRUNCATED


def test_pixel_cap_before_decoding():
    assert _reason(encode(random_image(0, (200, 200))), max_pixels=10_000) == R.TOO_LARGE
