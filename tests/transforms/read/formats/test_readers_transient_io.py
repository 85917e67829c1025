"""Storage failures raised by the file object propagate out of every reader.

They must reach the runner (which retries the bundle), never become error
rows: `ConnectionError`, `TimeoutError` and `PermissionError` are `OSError`s,
like Pillow's "image file is truncated".
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tools import hostile_corpus as hc
from transforms.read import formats


class _FailingFile(io.BytesIO):
    def __init__(self, data: bytes, exc: Exception, after: int):
        super().__init__(data)
        self._exc, self._after = exc, after

    def read(self, n=-1):
        if self.tell() + (len(self.getbuffer()) if n is None or n < 0 else n) > self._after:
            raise self._exc
        return super().read(n)


def _tar_bytes(tmp_path) -> bytes:
    path = str(tmp_path / "s.tar")
    return hc._tar(path, [(f"{i}.jpg", hc.valid_image(i)) for i in range(6)])


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"image": pa.array([hc.valid_image(i) for i in range(6)])}), buf)
    return buf.getvalue()


@pytest.mark.parametrize("exc", [ConnectionError("reset"), TimeoutError("timed out"),
                                 PermissionError("token expired")])
@pytest.mark.parametrize("kind", ["tar-start", "tar-middle", "parquet", "image"])
def test_storage_errors_propagate(tmp_path, kind, exc):
    if kind.startswith("tar"):
        data = _tar_bytes(tmp_path)
        after = 0 if kind == "tar-start" else len(data) // 2
        read = lambda f: list(formats.read_tar_shard("s.tar", f))
    elif kind == "parquet":
        data, after = _parquet_bytes(), 100
        read = lambda f: list(formats.read_parquet_file("p.parquet", f))
    else:
        data, after = hc.valid_image(1), 0
        read = lambda f: list(formats.read_image_file("i.jpg", f))
    with pytest.raises(type(exc)):
        read(_FailingFile(data, exc, after))
