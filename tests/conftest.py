"""Shared fixtures: a tiny stand-in CLIP and small generated images/datasets."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from tools.synthetic import write_tar  # noqa: F401 - the tests' tar shards

_PILLOW_PIXEL_CAP = Image.MAX_IMAGE_PIXELS  # Pillow's own, before any test ran


@pytest.fixture(autouse=True)
def _pillow_pixel_cap_restored():
    """Decoding sets Pillow's process-wide pixel cap (`transforms/decode.py`); restored
    after every test so that no later test (or module fixture) depends on the order."""
    yield
    Image.MAX_IMAGE_PIXELS = _PILLOW_PIXEL_CAP


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny random-weight CLIP in sentence-transformers format (built once)."""
    from tools.stand_in import write_stand_in

    return write_stand_in(str(tmp_path_factory.mktemp("models") / "clip-tiny"), "tiny")


def random_image(seed: int, size=(96, 64), mode="RGB") -> Image.Image:
    """A smooth random image (so JPEG re-encoding keeps it recognisable)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC)
    return img.convert(mode)


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()




def write_parquet_images(path: str, blobs: list[bytes | None], layout: str = "binary",
                         column: str = "image") -> str:
    """A Parquet file with an image column in `binary` or HF `struct` layout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout == "struct":
        values = [None if b is None else {"bytes": b, "path": f"img{i}.jpg"}
                  for i, b in enumerate(blobs)]
        table = pa.table({column: pa.array(values, pa.struct(
            [("bytes", pa.binary()), ("path", pa.string())]))})
    else:
        table = pa.table({column: pa.array(blobs, pa.binary())})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path)
    return path
