"""Decode-ahead: same outputs as inline decoding, in order, with a bounded window."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import encode, random_image
from transforms import records as R
from transforms.decode import DecodeImages, _DecodeAheadFn, decode_image


def _records(n: int) -> list[R.ImageRecord]:
    out = []
    for i in range(n):
        data = b"not an image" if i % 5 == 3 else encode(random_image(i, (80 + i, 60)))
        out.append(R.new_record("mem://set", str(i), f"k{i}", data))
    return out


def _run(records, ahead):
    with beam.Pipeline() as p:
        decoded = p | beam.Create(records) | DecodeImages(size=32, ahead=ahead)
        images = decoded.images | "Images" >> beam.Map(
            lambda d: (d.record.record_id, d.width, d.height, d.pixels.tobytes()))
        errors = decoded.errors | "Errors" >> beam.Map(lambda e: (e["record_id"], e["reason"]))
        expected_images, expected_errors = [], []
        for r in records:
            try:
                pixels, w, h = decode_image(r.data, 32)
                expected_images.append((r.record_id, w, h, pixels.tobytes()))
            except Exception:  # noqa: BLE001 - the bad records of _records
                expected_errors.append((r.record_id, "unidentified"))
        assert_that(images, equal_to(expected_images), label="images")
        assert_that(errors, equal_to(expected_errors), label="errors")
    return len(expected_images), len(expected_errors)


@pytest.mark.parametrize("ahead", [0, 1, 4, 64])
def test_decode_ahead_gives_the_inline_outputs(ahead):
    images, errors = _run(_records(23), ahead)
    assert (images, errors) == (19, 4)


def test_window_is_bounded_and_order_kept():
    held = []
    fn = _DecodeAheadFn(32, 10**8, decode_image, ahead=3)
    fn.setup()
    fn.start_bundle()
    records = [r for i, r in enumerate(_records(20)) if i % 5 != 3]
    outputs = []
    for r in records:
        outputs += list(fn.process(r, timestamp=0, window=beam.transforms.window.GlobalWindow()))
        held.append(len(fn._pending))
    outputs += list(fn.finish_bundle())
    fn.teardown()
    assert max(held) <= 3
    assert [o.value.record.record_id for o in outputs] == [r.record_id for r in records]
    assert all(isinstance(o.value.pixels, np.ndarray) for o in outputs)


def test_negative_ahead_rejected():
    with pytest.raises(ValueError, match="ahead"):
        DecodeImages(ahead=-1)
