"""The elements that flow between stages, their ids, and error rows.

A record is one image found in an input file. Its `record_id` is derived from
where it was found (file uri + position inside the file), so the same input
gives the same ids on every run, whatever the parallelism, and two members
with the same key in one tar shard still get different ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import numpy as np

# Stages that can reject a record (the `stage` column of the errors table).
READ, DECODE, EMBED = "read", "decode", "embed"

# Pillow's default decompression-bomb cap, made explicit: larger images are
# `too_large` before any pixel is allocated (config key `max_image_pixels`).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

# Stable reason codes (the `reason` column). Never rename one: nightly
# dashboards group by them.
EMPTY_FILE = "empty_file"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
UNIDENTIFIED = "unidentified"
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_LARGE = "too_large"
BAD_MEMBER_NAME = "bad_member_name"
BAD_MEMBER_TYPE = "bad_member_type"
NO_IMAGE_MEMBER = "no_image_member"
EXTRA_IMAGE_MEMBER = "extra_image_member"
SHARD_TRUNCATED = "shard_truncated"
SCHEMA_MISMATCH = "schema_mismatch"
MISSING_BYTES = "missing_bytes"
INFERENCE_FAILED = "inference_failed"
DECODE_TIMEOUT = "decode_timeout"  # decoding ran past decode_timeout_s (isolated decoding)
DECODER_CRASHED = "decoder_crashed"  # the decoding subprocess died (isolated decoding)
NOT_A_REGULAR_FILE = "not_a_regular_file"  # a FIFO, device or socket named like an input
FILE_TOO_LARGE = "file_too_large"  # an image file or tar member over max_file_bytes
CHANGED_DURING_RUN = "changed_during_run"  # the data pass read other bytes than the index pass

# Reasons a matched path is not read at all (the `reason` of `skipped.parquet`).
NOT_AN_INPUT = "not_an_input"  # extension of no input kind (.json, .txt sidecars)
DANGLING_SYMLINK = "dangling_symlink"

# Object addresses ("<_io.BytesIO object at 0x7f...>") differ on every run;
# error messages must not, so that reruns give identical errors tables.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

ID_HEX_CHARS = 20  # 80 bits: collision-free in practice at 10^9 records


def make_record_id(source_uri: str, locator: str) -> str:
    """Stable id of the record found at `locator` inside `source_uri`."""
    digest = hashlib.sha256(f"{source_uri}\0{locator}".encode())
    return digest.hexdigest()[:ID_HEX_CHARS]


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image as read from storage.

    `data` holds the encoded bytes; the index pass drops it (`without_data`)
    so that only small metadata is shuffled.
    """

    record_id: str
    source_uri: str
    key: str
    sha256: str
    file_size: int
    data: bytes | None = None

    def without_data(self) -> ImageRecord:
        return dataclasses.replace(self, data=None)


def new_record(source_uri: str, locator: str, key: str, data: bytes) -> ImageRecord:
    return ImageRecord(
        record_id=make_record_id(source_uri, locator),
        source_uri=source_uri,
        key=key,
        sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data),
        data=data,
    )


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """A decoded image ready for the model: `pixels` is uint8 [S, S, 3]."""

    record: ImageRecord  # without data
    width: int  # of the original image, after EXIF orientation
    height: int
    pixels: np.ndarray
    phash: int | None = None  # 64-bit perceptual hash as int64 (transforms.phash)


def error_row(stage: str, reason: str, message: str, *, source_uri: str,
              record_id: str | None = None, key: str | None = None) -> dict[str, Any]:
    """A row of the errors table (`schemas.ERRORS_SCHEMA`)."""
    return {
        "record_id": record_id,
        "source_uri": source_uri,
        "key": key,
        "stage": stage,
        "reason": reason,
        "message": " ".join(_ADDRESS.sub("", message).split())[:2000],  # one line
    }


def record_error(record: ImageRecord, stage: str, reason: str, message: str) -> dict[str, Any]:
    return error_row(stage, reason, message, source_uri=record.source_uri,
                     record_id=record.record_id, key=record.key)
