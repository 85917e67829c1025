import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import encode, random_image, write_parquet_images
from transforms import records as R
from transforms.formats.parquet_files import read_parquet_file


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
