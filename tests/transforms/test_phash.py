"""The perceptual hash: the DCT recipe's known properties, and the decode stage's input."""

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy.fftpack import dct

from tests.conftest import encode
from transforms.decode import decode_image, decode_image_and_hash
from transforms.phash import _DCT, as_unsigned, bits_to_int64, hamming, hash_bits, perceptual_hash
from transforms.records import DEFAULT_MAX_IMAGE_PIXELS

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "coins")


@pytest.fixture(autouse=True)
def _default_pixel_cap(monkeypatch):
    """Decoding sets Pillow's process-wide pixel cap (other tests lower it); skimage.data opens
    its photographs through Pillow, so they get the default back."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def test_dct_matches_scipy_and_bits_follow_imagededup():
    x = np.random.default_rng(0).random((32, 32)) * 255
    reference = dct(dct(x, axis=0), axis=1)[:8, :8]
    assert np.allclose(_DCT @ x @ _DCT.T, reference)
    expected = reference >= np.median(reference.ravel()[1:])  # imagededup: median without DC
    assert np.array_equal(hash_bits(x), expected)


def test_bits_round_trip_through_int64():
    bits = np.random.default_rng(1).random(64) > 0.5
    value = bits_to_int64(bits)
    assert -(1 << 63) <= value < (1 << 63)
    unsigned = int(as_unsigned(value))
    assert [(unsigned >> (63 - k)) & 1 for k in range(64)] == bits.astype(int).tolist()
    assert bits_to_int64(np.ones(64, bool)) == -1 and bits_to_int64(np.zeros(64, bool)) == 0


@pytest.mark.parametrize("name", PHOTOS)
def test_resized_and_recompressed_copies_stay_close(name):
    img = _photo(name)
    h = perceptual_hash(img)
    half = img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)
    jpeg = Image.open(io.BytesIO(encode(img, quality=40)))
    assert hamming(h, perceptual_hash(half)) <= 2
    assert hamming(h, perceptual_hash(jpeg)) <= 4


def test_different_photos_are_far_apart():
    hashes = [perceptual_hash(_photo(n)) for n in PHOTOS]
    distances = [int(hamming(a, b)) for k, a in enumerate(hashes) for b in hashes[k + 1:]]
    assert min(distances) >= 16, distances


def test_decode_hashes_the_picture_as_shown_not_as_stored():
    img = _photo("astronaut").resize((200, 200))
    _, _, _, upright = decode_image_and_hash(encode(img, "PNG"), 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated a quarter left: shown upright
    stored = img.transpose(Image.Transpose.ROTATE_90)
    _, _, _, rotated = decode_image_and_hash(encode(stored, quality=95, exif=exif.tobytes()), 64)
    assert hamming(upright, rotated) <= 4
    assert hamming(upright, perceptual_hash(stored)) > 16  # what hashing the stored pixels gives


def test_transparency_is_hashed_on_white():
    arr = np.asarray(_photo("coffee").resize((120, 90)).convert("RGBA")).copy()
    arr[:, :40, 3] = 0  # transparent band whose hidden colour is the photo's
    rgba = Image.fromarray(arr, "RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    _, _, _, h_rgba = decode_image_and_hash(encode(rgba, "PNG"), 32)
    _, _, _, h_flat = decode_image_and_hash(encode(flat.convert("RGB"), "PNG"), 32)
    assert h_rgba == h_flat


def test_hash_covers_the_whole_picture_not_the_centre_crop():
    """Two wide images with the same centre but different sides: the model's crops
    are equal, their hashes are not."""
    base = np.asarray(_photo("chelsea").resize((300, 100)))
    other = base.copy()
    other[:, :100] = np.asarray(_photo("rocket").resize((100, 100)))
    a, b = encode(Image.fromarray(base), "PNG"), encode(Image.fromarray(other), "PNG")
    # size 100: the crop is taken without resampling, so the two crops are equal exactly
    assert np.array_equal(decode_image(a, 100)[0], decode_image(b, 100)[0])
    assert hamming(decode_image_and_hash(a, 100)[3], decode_image_and_hash(b, 100)[3]) >= 8


def test_decode_and_hash_gives_decode_image_pixels():
    data = encode(_photo("camera").resize((90, 70)))
    pixels, w, h, phash = decode_image_and_hash(data, 32)
    ref_pixels, ref_w, ref_h = decode_image(data, 32)
    assert np.array_equal(pixels, ref_pixels) and (w, h) == (ref_w, ref_h)
    assert isinstance(phash, int)
