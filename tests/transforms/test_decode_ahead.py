"""Decode-ahead: same outputs as inline decoding, in order, with a bounded window;
overlapping the model (one background thread) or taking turns with it (parallel)."""

import threading
import time

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


def _run(records, ahead, overlap=True):
    with beam.Pipeline() as p:
        decoded = p | beam.Create(records) | DecodeImages(size=32, ahead=ahead, overlap=overlap)
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


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("ahead", [0, 1, 4, 64])
def test_decode_ahead_gives_the_inline_outputs(ahead, overlap):
    images, errors = _run(_records(23), ahead, overlap)
    assert (images, errors) == (19, 4)


@pytest.mark.parametrize("overlap", [True, False])
def test_window_is_bounded_and_order_kept(overlap):
    held = []
    fn = _DecodeAheadFn(32, 10**8, decode_image, ahead=3, overlap=overlap, threads=2)
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


def test_negative_ahead_or_threads_rejected():
    with pytest.raises(ValueError, match="ahead"):
        DecodeImages(ahead=-1)
    with pytest.raises(ValueError, match="threads"):
        DecodeImages(ahead=4, threads=-1)


def _drive(fn, records, on_output):
    """Runs `fn` over `records` like a fused stage: `on_output` is the downstream
    work (the forward pass) done while each output is handed on."""
    window = beam.transforms.window.GlobalWindow()
    fn.setup()
    fn.start_bundle()
    try:
        for r in records:
            for _ in fn.process(r, timestamp=0, window=window):
                on_output()
        for _ in fn.finish_bundle():
            on_output()
    finally:
        fn.teardown()


def _timed(intervals: list, decoder=decode_image):
    """`decoder`, with the (start, end) of each call appended to `intervals`."""
    def decode(data, size, max_pixels):
        start = time.perf_counter()
        try:
            threading.Event().wait(0.01)
            return decoder(data, size, max_pixels)
        finally:
            intervals.append((start, time.perf_counter()))
    return decode


def _schedule(overlap: bool):
    """(decoding intervals, downstream intervals) of 16 records, 4 ahead."""
    records = [r for i, r in enumerate(_records(20)) if i % 5 != 3]
    decoding, downstream = [], []

    def forward_pass():
        start = time.perf_counter()
        threading.Event().wait(0.02)
        downstream.append((start, time.perf_counter()))

    fn = _DecodeAheadFn(32, 10**8, _timed(decoding), ahead=4, overlap=overlap, threads=2)
    _drive(fn, records, forward_pass)
    assert len(decoding) == len(downstream) == len(records)
    return decoding, downstream


def _overlapping(a: list, b: list) -> int:
    return sum(1 for s1, e1 in a for s2, e2 in b if s1 < e2 and s2 < e1)


def test_taking_turns_never_decodes_while_downstream_runs():
    assert _overlapping(*_schedule(overlap=False)) == 0


def test_overlap_decodes_while_downstream_runs():
    """The contrast to the test above: with overlap the decoder runs beside downstream."""
    assert _overlapping(*_schedule(overlap=True)) > 0


def test_taking_turns_decodes_with_several_threads():
    """Two decodes must be in flight at once, or the barrier times out."""
    barrier = threading.Barrier(2, timeout=10)

    def decoder(data, size, max_pixels):
        barrier.wait()
        return decode_image(data, size, max_pixels)

    records = [r for i, r in enumerate(_records(10)) if i % 5 != 3]
    fn = _DecodeAheadFn(32, 10**8, decoder, ahead=4, overlap=False, threads=2)
    outputs = []
    _drive(fn, records, lambda: outputs.append(1))
    assert len(outputs) == len(records)
