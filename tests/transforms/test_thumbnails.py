"""ReadThumbnails: only the sampled records, read back with the run's readers."""

from __future__ import annotations

import io
import os
import tarfile

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from tests.conftest import encode, random_image, write_parquet_images, write_tar
from transforms import records as R
from transforms.decode import DecodeError
from transforms.thumbnails import THUMBNAIL_SIDE, ReadThumbnails, make_thumbnails


def test_thumbnail_is_small_upright_and_keeps_the_whole_size():
    img = random_image(1, (400, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: shown 100x400
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    jpeg, grey, w, h = make_thumbnails(buf.getvalue())
    assert (w, h) == (100, 400)
    small = Image.open(io.BytesIO(jpeg))
    assert small.format == "JPEG" and max(small.size) == THUMBNAIL_SIDE
    assert small.size[1] > small.size[0]  # upright
    assert Image.open(io.BytesIO(grey)).mode == "L"


def test_bytes_that_do_not_decode_raise_the_decoders_reason():
    with pytest.raises(DecodeError) as err:
        make_thumbnails(encode(random_image(2, (64, 64)))[:100])
    assert err.value.reason == R.TRUNCATED


def test_reads_only_the_wanted_records_and_says_why_others_have_none(tmp_path):
    blobs = [encode(random_image(i, (90, 60))) for i in range(4)]
    shard = write_tar(str(tmp_path / "s.tar"), [(f"{i:03d}.jpg", b) for i, b in enumerate(blobs)])
    pq = write_parquet_images(str(tmp_path / "pq" / "0.parquet"), blobs[:2], "struct")
    image = tmp_path / "one.jpg"
    image.write_bytes(blobs[3])
    (tmp_path / "bad.jpg").write_bytes(b"<html>")
    os.mkfifo(tmp_path / "fifo.jpg")
    with tarfile.open(shard) as tar:
        member = R.make_record_id(shard, f"tar:{tar.getmembers()[1].offset}")
    wanted = [
        {"record_id": member, "source_uri": shard},
        {"record_id": member, "source_uri": shard},  # asked twice, read once
        {"record_id": R.make_record_id(pq, "row:1"), "source_uri": pq},
        {"record_id": R.make_record_id(str(image), "file"), "source_uri": str(image)},
        {"record_id": "gone", "source_uri": str(tmp_path / "moved.jpg")},
        {"record_id": "not-in-it", "source_uri": shard},
        {"record_id": R.make_record_id(str(tmp_path / "bad.jpg"), "file"),
         "source_uri": str(tmp_path / "bad.jpg")},
        {"record_id": "fifo", "source_uri": str(tmp_path / "fifo.jpg")},
    ]

    def summary(row):
        size = Image.open(io.BytesIO(row["thumbnail"])).size if row["thumbnail"] else None
        note = row["note"]
        return (row["record_id"], size, row["width"], note and note.split(" ")[-1])

    with TestPipeline(runner="DirectRunner") as p:
        rows = p | beam.Create(wanted) | ReadThumbnails()
        assert_that(rows | beam.Map(summary), equal_to([
            (member, (90, 60), 90, None),
            (R.make_record_id(pq, "row:1"), (90, 60), 90, None),
            (R.make_record_id(str(image), "file"), (90, 60), 90, None),
            ("gone", None, None, "exists"),
            ("not-in-it", None, None, "run?)"),
            (R.make_record_id(str(tmp_path / "bad.jpg"), "file"), None, None, "unidentified"),
            ("fifo", None, None, "file"),
        ]))
