"""Decoder hangs and crashes are contained in `subprocess` isolation."""

from __future__ import annotations

import faulthandler
import os
import signal
import time

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tools.hostile_corpus import encode, smooth_image
from transforms import records as R
from transforms.decode import DecodeImages, decode_image


def hostile_decoder(data: bytes, size: int, max_pixels: int):
    """`decode_image`, except that some bytes hang it or kill its process."""
    if data.startswith(b"HANG"):
        time.sleep(600)
    if data.startswith(b"SEGV"):
        faulthandler.disable()  # keep pytest's crash dump of the child out of the log
        os.kill(os.getpid(), signal.SIGSEGV)
    return decode_image(data, size, max_pixels)


def _records():
    blobs = {"ok-1": encode(smooth_image(1)), "hang": b"HANG", "ok-2": encode(smooth_image(2)),
             "segv": b"SEGV", "html": b"<html></html>", "ok-3": encode(smooth_image(3))}
    return [R.new_record("mem://test", key, key, blob) for key, blob in blobs.items()]


def _reasons(isolation: str, timeout_s: float | None, decoder=hostile_decoder):
    with test_pipeline.TestPipeline() as p:
        decoded = (p | "Records" >> beam.Create(_records())
                   | "DecodeImages" >> DecodeImages(32, 10_000, isolation, timeout_s, decoder))
        assert_that(decoded.images | "Keys" >> beam.Map(lambda im: im.record.key),
                    equal_to(["ok-1", "ok-2", "ok-3"]), label="CheckImages")
        assert_that(decoded.errors | "Reasons" >> beam.Map(lambda e: (e["key"], e["stage"],
                                                                       e["reason"])),
                    equal_to([("hang", "decode", R.DECODE_TIMEOUT),
                              ("segv", "decode", R.DECODER_CRASHED),
                              ("html", "decode", R.UNIDENTIFIED)]), label="CheckErrors")


def test_subprocess_isolation_turns_hang_and_crash_into_error_rows():
    started = time.monotonic()
    _reasons("subprocess", timeout_s=3)
    assert time.monotonic() - started < 60


def test_unknown_isolation_mode_is_rejected():
    with pytest.raises(ValueError, match="isolation"):
        DecodeImages(isolation="thread")
