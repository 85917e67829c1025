import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import encode, random_image, write_parquet_images
from transforms import records as R
from transforms.read.formats.parquet_files import read_parquet_file


def _read(path, **kw):
    with open(path, "rb") as f:
        return list(read_parquet_file(path, f, **kw))


def test_binary_and_hf_struct_layouts(tmp_path):
    blobs = [encode(random_image(i)) for i in range(3)]
    for layout in ("binary", "struct"):
        path = write_parquet_images(str(tmp_path / f"{layout}.parquet"), blobs, layout)
        items = _read(path)
        assert [i.data for i in items] == blobs
        assert len({i.record_id for i in items}) == 3
    assert [i.key for i in _read(str(tmp_path / "struct.parquet"))] == [
        "img0.jpg", "img1.jpg", "img2.jpg"]


def test_null_rows_are_errors(tmp_path):
    path = write_parquet_images(str(tmp_path / "n.parquet"), [encode(random_image(0)), None],
                                "struct")
    items = _read(path)
    assert isinstance(items[0], R.ImageRecord)
    assert items[1]["reason"] == R.MISSING_BYTES and items[1]["record_id"]


def test_schema_checked_per_file(tmp_path):
    path = str(tmp_path / "s.parquet")
    pq.write_table(pa.table({"image": ["not", "bytes"]}), path)
    items = _read(path)
    assert len(items) == 1 and items[0]["reason"] == R.SCHEMA_MISMATCH
    renamed = str(tmp_path / "r.parquet")
    pq.write_table(pa.table({"img": pa.array([b"x"], pa.binary())}), renamed)
    assert _read(renamed)[0]["reason"] == R.SCHEMA_MISMATCH


def test_key_column(tmp_path):
    path = str(tmp_path / "k.parquet")
    pq.write_table(pa.table({"image": pa.array([encode(random_image(0))], pa.binary()),
                             "url": ["http://x/1.jpg"]}), path)
    assert _read(path, key_column="url")[0].key == "http://x/1.jpg"


def _three_row_groups(path, blobs):
    pq.write_table(pa.table({"image": pa.array(blobs, pa.binary())}), path,
                   row_group_size=2, use_dictionary=False)
    return pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset


def test_corrupt_page_becomes_corrupt_rows_and_the_rest_is_read(tmp_path):
    """pyarrow raises OSError("Couldn't deserialize thrift") for a bad page
    header: bad data, not storage, so its rows are errors and the run goes on."""
    blobs = [encode(random_image(i)) for i in range(6)]
    path = str(tmp_path / "c.parquet")
    offset = _three_row_groups(path, blobs)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 8)
    items = _read(path)
    assert [i.key for i in items if isinstance(i, R.ImageRecord)] == ["0", "1", "4", "5"]
    errors = [i for i in items if isinstance(i, dict)]
    assert [(e["key"], e["reason"]) for e in errors] == [("2", R.CORRUPT), ("3", R.CORRUPT)]
    assert "thrift" in errors[0]["message"]
    assert len({i.record_id if isinstance(i, R.ImageRecord) else i["record_id"]
                for i in items}) == 6


class _FailsInRange(io.BytesIO):
    """Storage that fails (once) on any read overlapping [start, end)."""

    def __init__(self, data, start, end, exc):
        super().__init__(data)
        self._range, self._exc = (start, end), exc

    def read(self, n=-1):
        lo = self.tell()
        hi = lo + (len(self.getbuffer()) if n is None or n < 0 else n)
        if self._exc and lo < self._range[1] and hi > self._range[0]:
            exc, self._exc = self._exc, None
            raise exc
        return super().read(n)


@pytest.mark.parametrize("exc", [ConnectionError("reset"), OSError("EIO")])
def test_storage_error_inside_a_page_read_propagates(tmp_path, exc):
    """The same OSError class from the file object itself is transient: it
    propagates (the runner retries) instead of becoming `corrupt` rows."""
    path = str(tmp_path / "p.parquet")
    offset = _three_row_groups(path, [encode(random_image(i)) for i in range(6)])
    data = open(path, "rb").read()
    with pytest.raises(type(exc)):
        list(read_parquet_file(path, _FailsInRange(data, offset, offset + 1, exc)))


def test_two_image_columns_and_non_string_path_are_schema_mismatches(tmp_path):
    blob = pa.array([encode(random_image(0))], pa.binary())
    two = str(tmp_path / "two.parquet")
    pq.write_table(pa.Table.from_arrays([blob, blob], names=["image", "image"]), two)
    items = _read(two)
    assert [(i["reason"], i["record_id"]) for i in items] == [(R.SCHEMA_MISMATCH, None)]
    assert "appears 2 times" in items[0]["message"]
    hf = str(tmp_path / "hf.parquet")
    pq.write_table(pa.table({"image": pa.StructArray.from_arrays(
        [blob, pa.array([7])], names=["bytes", "path"])}), hf)
    items = _read(hf)
    assert [(i["reason"], i["record_id"]) for i in items] == [(R.SCHEMA_MISMATCH, None)]
    assert "path is int64" in items[0]["message"]


def test_batch_byte_budget_comes_from_row_group_metadata(tmp_path, monkeypatch):
    """Rows of ~1 MiB under a 4 MiB budget: batches of 3-4 rows, all rows read."""
    from transforms.read.formats import parquet_files

    monkeypatch.setattr(parquet_files, "BATCH_BYTES", 4 << 20)
    blobs = [encode(random_image(i)) + bytes(1 << 20) for i in range(20)]
    path = str(tmp_path / "big-rows.parquet")
    pq.write_table(pa.table({"image": pa.array(blobs, pa.binary())}), path,
                   compression="zstd")
    sizes = []
    real = pq.ParquetFile.iter_batches

    def spy(self, batch_size=65536, **kw):
        sizes.append(batch_size)
        return real(self, batch_size=batch_size, **kw)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    assert [i.data for i in _read(path)] == blobs
    assert sizes and max(sizes) <= 4


@pytest.mark.slow
def test_more_than_2_gib_in_one_batch_is_read_row_by_row(tmp_path):
    """An HF struct column with 3 x 760 MiB rows: one batch of them overflows
    Arrow's 2 GiB binary array (`Nested data conversions not implemented for
    chunked array outputs`); the reader falls back to row by row. The file is
    ~50 KB (zstd zeros) but needs ~3 GiB of memory to write and read."""
    big = bytes(760 << 20)
    path = str(tmp_path / "huge.parquet")
    column = pa.chunked_array([pa.StructArray.from_arrays(
        [pa.array([big], pa.binary()), pa.array([key])], names=["bytes", "path"])
        for key in "abc"])
    pq.write_table(pa.table({"image": column}), path, compression="zstd")
    del column
    with open(path, "rb") as f:
        keys = [(i.key, i.file_size) for i in read_parquet_file(path, f)]
    assert keys == [("a", len(big)), ("b", len(big)), ("c", len(big))]
