import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import Config
from transforms.mining.distributed import MineDistributed
from transforms.mining.stage import (
    finish,
    mine_records,
    pairs_from_table,
    read_embeddings,
    write_outputs,
)
from transforms.mining.synthetic import clustered_embeddings
from transforms.schemas import EXACT_DUPLICATES_SCHEMA, PAIRS_SCHEMA, embeddings_schema


def _write_embeddings(folder, n=600, dim=16):
    x = clustered_embeddings(n, dim, topic_size=100, near_fraction=0.2, duplicate_fraction=0.05, seed=9)
    ids = [f"s0-{k:04d}" for k in range(n)]
    table = pa.table({
        "record_id": ids, "source_uri": ["mem://s0"] * n, "key": [f"k{k}" for k in range(n)],
        "sha256": [f"h{k}" for k in range(n)],
        "width": pa.array(np.full(n, 64), pa.int32()), "height": pa.array(np.full(n, 64), pa.int32()),
        "file_size": pa.array(np.arange(n), pa.int64()), "model": ["m"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
    }, schema=embeddings_schema(dim))
    folder.mkdir()
    pq.write_table(table.slice(0, 250), folder / "part-0.parquet")
    pq.write_table(table.slice(250), folder / "part-1.parquet")
    return x, ids


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_mine_records_writes_consistent_run_tables(tmp_path, mode):
    x, ids = _write_embeddings(tmp_path / "emb")
    records, got = read_embeddings(str(tmp_path / "emb"))
    order = np.argsort(records.column("record_id").to_pylist())
    np.testing.assert_array_equal(got[order], x)
    copies = pa.table({"record_id_a": ["s0-0001"], "record_id_b": ["s9-0001"], "sha256": ["h1"],
                       "source_uri_a": ["mem://s0"], "key_a": ["k1"], "source_uri_b": ["mem://s9"],
                       "key_b": ["k1"]}, schema=EXACT_DUPLICATES_SCHEMA)
    cfg = Config(mode=mode, nprobe=4, recall_sample_size=600)
    out = mine_records(records, got, copies, cfg)
    write_outputs(out, str(tmp_path / "run"))
    keep = pq.read_table(tmp_path / "run" / "keep.parquet")
    drop = pq.read_table(tmp_path / "run" / "drop.parquet")
    assert keep.num_rows + drop.num_rows == len(ids) + 1
    assert "s9-0001" in drop.column("record_id").to_pylist()
    assert (tmp_path / "run" / "keep.txt").read_text().splitlines() == out.keep_lines
    assert len(out.keep_lines) == keep.num_rows
    drop_lines = (tmp_path / "run" / "drop.txt").read_text().splitlines()
    assert drop_lines == out.drop_lines and len(drop_lines) == drop.num_rows
    assert "mem://s9#k1" in drop_lines  # the byte copy, located though it was never embedded
    dup = pq.read_table(tmp_path / "run" / "duplicates.parquet")
    assert dup.schema.equals(PAIRS_SCHEMA) and dup.num_rows > 0
    assert all(a < b for a, b in zip(dup.column("record_id_a").to_pylist(),
                                     dup.column("record_id_b").to_pylist()))
    assert out.stats["mining"]["mode"] == mode and out.stats["mining"]["recall_sampled"] == 1.0


def test_not_normalised_is_an_error(tmp_path):
    x, _ = _write_embeddings(tmp_path / "emb", n=10)
    t = pq.read_table(tmp_path / "emb" / "part-0.parquet")
    bad = pa.FixedSizeListArray.from_arrays(pa.array((2 * x).reshape(-1)), 16)
    pq.write_table(t.set_column(8, "embedding", bad.slice(0, t.num_rows)),
                   tmp_path / "emb" / "part-0.parquet")
    with pytest.raises(ValueError, match="not L2-normalised"):
        read_embeddings(str(tmp_path / "emb"))


def test_distributed_pairs_feed_the_same_groups(tmp_path):
    _write_embeddings(tmp_path / "emb")
    records, x = read_embeddings(str(tmp_path / "emb"))
    cfg = Config(mode="exact")
    local = mine_records(records, x, None, cfg)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        _ = (p | beam.Create(list(zip(records.column("record_id").to_pylist(), list(x))))
             | MineDistributed(cfg.near_duplicate_threshold, nlist=4, partitions_per_vector=2)
             | beam.io.WriteToParquet(str(tmp_path / "pairs" / "part"), schema=PAIRS_SCHEMA,
                                      file_name_suffix=".parquet"))
    table = pq.read_table(tmp_path / "pairs")
    assert table.num_rows == local.duplicates.num_rows + local.near_duplicates.num_rows > 0
    out = finish(records, pairs_from_table(table, records), None, cfg, {"mode": "distributed"})
    # Same groups and manifest; scores agree to float32 rounding (different summation order).
    cols = ["record_id", "group_id", "keeper_id", "kind", "component_id"]
    assert out.groups.select(cols).equals(local.groups.select(cols)) and out.drop.equals(local.drop)
    np.testing.assert_allclose(out.groups.column("score_to_keeper").to_numpy(),
                               local.groups.column("score_to_keeper").to_numpy(), atol=1e-5)
