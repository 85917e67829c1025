"""Tonight's rows of the previous embeddings table, a row group at a time (`carry_table`),
and `ReuseEmbeddings`' decisions that drive it."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import embed_pipeline
from transforms import schemas
from transforms.embed.carried import CarryVectors, carry_table
from transforms.embed.reuse import NEW, NOT_CARRIED, RENAMED, TO_EMBED, ReuseEmbeddings
from transforms.records import ImageRecord

DIM = 4
SCHEMA = schemas.embeddings_schema(DIM, phash=True)


def _previous(ids, phash=True):
    n = len(ids)
    vectors = np.arange(n * DIM, dtype=np.float32).reshape(n, DIM) / 7
    columns = {"record_id": ids, "source_uri": [f"mem://{i}.tar" for i in ids],
               "key": [f"{i}.jpg" for i in ids], "sha256": [f"sha-{i}" for i in ids],
               "width": pa.array([2] * n, pa.int32()), "height": pa.array([3] * n, pa.int32()),
               "file_size": pa.array([5] * n, pa.int64()), "model": ["m"] * n,
               "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM)}
    if phash:
        columns["phash"] = pa.array(range(n), pa.int64())
    # as Parquet gives it back: nullable fields
    return pa.table(columns), vectors


def _renamed(*rows):
    names = ("from", "record_id", "source_uri", "key")
    return {name: pa.array([r[k] for r in rows], pa.string()) for k, name in enumerate(names)}


def test_rows_stay_leave_or_move_with_their_vectors():
    table, vectors = _previous(["a", "b", "c", "d"])
    out = carry_table(table, pa.array(["b", "c"]), _renamed(("c", "2c", "mem://2c.tar", "2c.jpg")),
                      SCHEMA)
    assert out.schema == SCHEMA
    rows = {r["record_id"]: r for r in out.to_pylist()}
    assert sorted(rows) == ["2c", "a", "d"]
    assert (rows["2c"]["source_uri"], rows["2c"]["key"], rows["2c"]["sha256"]) == (
        "mem://2c.tar", "2c.jpg", "sha-c")
    for rid, k in (("a", 0), ("2c", 2), ("d", 3)):
        assert np.array_equal(np.array(rows[rid]["embedding"], np.float32), vectors[k])
    assert rows["2c"]["phash"] == 2


def test_nothing_gone_is_the_table_as_it_was_and_an_old_table_gets_a_null_phash():
    table, _ = _previous(["a", "b"], phash=False)
    out = carry_table(table, pa.array([], pa.string()), _renamed(), SCHEMA)
    assert out.column("record_id").to_pylist() == ["a", "b"]
    assert out.column("phash").null_count == 2
    assert out.column("embedding").equals(table.column("embedding").cast(SCHEMA.field(
        "embedding").type))


def _rec(rid, sha):
    return ImageRecord(rid, f"mem://{rid}.tar", f"{rid}.jpg", sha, 1)


def test_reuse_decides_and_carry_vectors_writes_the_previous_vectors(tmp_path):
    previous, vectors = _previous(["a", "b", "c", "x"])
    # "x" shares "a"'s content: a table should not hold two rows of one content, but if
    # it does, only the first is reused and the other leaves like a removed record
    previous = previous.set_column(3, "sha256", pa.array(["sha-a", "sha-b", "sha-c", "sha-a"]))
    folder = tmp_path / "previous"
    folder.mkdir()
    pq.write_table(previous, folder / "part-0.parquet")
    metadata = previous.drop_columns(["embedding", "phash"]).to_pylist()
    # tonight: a kept; b removed; c now represented by "0c" (a smaller id, same bytes);
    # n new content
    tonight = [_rec("a", "sha-a"), _rec("c", "sha-c"), _rec("0c", "sha-c"), _rec("n", "sha-n")]
    out_dir = tmp_path / "embeddings"
    with TestPipeline() as p:
        reused = ({"records": p | "Now" >> beam.Create(tonight),
                   "previous": p | "Before" >> beam.Create(metadata)}
                  | ReuseEmbeddings())
        assert_that(reused[TO_EMBED], equal_to(["n"]), label="ToEmbed")
        assert_that(reused[NEW], equal_to(["n", "0c"]), label="New")
        assert_that(reused[NOT_CARRIED], equal_to(["b", "c", "x"]), label="NotCarried")
        assert_that(reused[RENAMED], equal_to([("c", "0c", "mem://0c.tar", "0c.jpg")]),
                    label="Renamed")
        assert_that(reused["embeddings"] | beam.Map(lambda r: r["record_id"]),
                    equal_to(["a", "0c"]), label="Reused")
        _ = ({"not_carried": reused[NOT_CARRIED], "renamed": reused[RENAMED]}
             | CarryVectors(str(folder / "*.parquet"), str(out_dir), SCHEMA))
    written = pq.read_table(sorted(out_dir.glob("carried*.parquet")))
    assert written.schema == SCHEMA
    got = {r["record_id"]: np.array(r["embedding"], np.float32) for r in written.to_pylist()}
    assert sorted(got) == ["0c", "a"]
    assert np.array_equal(got["a"], vectors[0]) and np.array_equal(got["0c"], vectors[2])


def test_a_night_reads_the_previous_embeddings_without_their_vectors(tmp_path):
    from tests.pipelines.test_nightly import _empty_run

    previous = _empty_run(tmp_path / "previous")
    table, _ = _previous(["a", "b"])
    pq.write_table(table, f"{previous}/embeddings/part-1.parquet")
    with TestPipeline() as p:
        files = p | beam.Create([], reshuffle=False).with_output_types(beam.io.filesystem.FileMetadata)
        _, carried = embed_pipeline._carry_forward(p, previous, files)
        assert_that(carried["embedded"] | beam.Map(lambda row: sorted(row)),
                    equal_to([sorted(f.name for f in schemas.EMBEDDING_METADATA_FIELDS)] * 2))
