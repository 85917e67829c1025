"""`transforms.parquet_open`: remote Parquet files in bounded memory, footers from the tail."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipelines import object_store
from transforms import parquet_open


class _CountingReader(io.BytesIO):
    """What a remote object's reader was asked for."""

    reads: list[int] = []

    def read(self, size=-1):
        data = super().read(size)
        _CountingReader.reads.append(len(data))
        return data


@pytest.fixture
def remote(monkeypatch):
    x = np.random.default_rng(0).random((20_000, 16), dtype=np.float32)
    table = pa.table({"record_id": [f"r{i:06d}" for i in range(len(x))],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 16)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=5_000)
    path = "memgs://bucket/run/embeddings/part-0.parquet"
    object_store.OBJECTS[path] = (buf.getvalue(), 1.0)
    monkeypatch.setattr(object_store.MemGcsFileSystem, "open",
                        lambda self, p, *a, **k: _CountingReader(object_store.OBJECTS[p][0]))
    _CountingReader.reads = []
    yield path, table, len(buf.getvalue())
    object_store.OBJECTS.pop(path, None)


def test_remote_file_is_read_in_chunks_not_whole(remote, monkeypatch):
    path, table, size = remote
    monkeypatch.setattr(parquet_open, "COPY_CHUNK_BYTES", 64 << 10)
    pf = parquet_open.open_parquet(path)
    assert sum(_CountingReader.reads) == size
    assert max(_CountingReader.reads) <= 64 << 10
    assert pf.metadata.num_row_groups == 4
    assert pf.read_row_group(3).equals(table.slice(15_000).combine_chunks())
    assert pf.read().equals(table)


def test_footer_reads_only_the_tail(remote):
    path, table, size = remote
    footer = parquet_open.parquet_footer(path)
    assert (footer.num_rows, footer.num_row_groups) == (20_000, 4)
    assert sum(_CountingReader.reads) < size / 50
    assert parquet_open.parquet_schema(path) == table.schema


def test_local_file_footer_and_schema(tmp_path):
    table = pa.table({"record_id": ["a", "b"], "score": pa.array([0.5, 1.0], pa.float32())})
    pq.write_table(table, tmp_path / "t.parquet")
    assert parquet_open.parquet_footer(str(tmp_path / "t.parquet")).num_rows == 2
    assert parquet_open.parquet_schema(str(tmp_path / "t.parquet")) == table.schema


@pytest.mark.parametrize("data", [b"", b"PAR1", b"x" * 100, b"PAR1" + b"\0" * 20 + b"\xff\xff\0\0PAR1"])
def test_a_remote_file_that_is_not_parquet_is_bad_input_naming_it(data):
    path = "memgs://bucket/broken.parquet"
    object_store.OBJECTS[path] = (data, 1.0)
    try:
        with pytest.raises(ValueError, match="broken.parquet: not a Parquet file"):
            parquet_open.parquet_footer(path)
    finally:
        object_store.OBJECTS.pop(path)


def test_a_local_file_that_is_not_parquet_is_bad_input_naming_it(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"hello\n")
    with pytest.raises(ValueError, match="x.parquet: not a Parquet file"):
        parquet_open.parquet_footer(str(tmp_path / "x.parquet"))
