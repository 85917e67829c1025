"""`clipdedup mine` in exact and distributed mode on one table: the same pairs,
groups and manifest (scores agree to float32 rounding: another summation order)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.cli import exit_code
from tools.synthetic import clustered_embeddings
from transforms.schemas import embeddings_schema


def _write_embeddings(folder, n=600, dim=16):
    x = clustered_embeddings(n, dim, topic_size=100, near_fraction=0.2, duplicate_fraction=0.05,
                             seed=9)
    table = pa.table({
        "record_id": [f"s0-{k:04d}" for k in range(n)], "source_uri": ["mem://s0"] * n,
        "key": [f"k{k}" for k in range(n)], "sha256": [f"h{k}" for k in range(n)],
        "width": pa.array(np.full(n, 64), pa.int32()),
        "height": pa.array(np.full(n, 64), pa.int32()),
        "file_size": pa.array(np.arange(n), pa.int64()), "model": ["m"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
    }, schema=embeddings_schema(dim))
    folder.mkdir()
    pq.write_table(table.slice(0, 250), folder / "part-0.parquet")
    pq.write_table(table.slice(250), folder / "part-1.parquet")


def _sorted(table: pa.Table, columns: list[str]) -> list[dict]:
    return sorted(table.select(columns).to_pylist(), key=lambda r: r["record_id"])


def test_distributed_mining_gives_the_exact_groups_and_manifest(tmp_path):
    _write_embeddings(tmp_path / "emb")
    config = tmp_path / "config.yaml"
    config.write_text("nlist: 4\npartitions_per_vector: 2\n")
    runs = {}
    for mode in ("exact", "distributed"):
        assert exit_code(["mine", "--config", str(config), "--embeddings", str(tmp_path / "emb"),
                          "--output", str(tmp_path / "out"), "--run-id", mode, "--mode", mode,
                          "-q"]) == 0
        runs[mode] = tmp_path / "out" / mode
    tables = {mode: {t: pq.read_table(folder / f"{t}.parquet") for t in
                     ("duplicates", "near_duplicates", "groups", "drop", "keep")}
              for mode, folder in runs.items()}
    exact, dist = tables["exact"], tables["distributed"]
    pairs = exact["duplicates"].num_rows + exact["near_duplicates"].num_rows
    assert pairs > 0
    assert dist["duplicates"].num_rows + dist["near_duplicates"].num_rows == pairs
    cols = ["record_id", "group_id", "keeper_id", "kind", "component_id"]
    assert exact["groups"].num_rows > 0
    assert _sorted(dist["groups"], cols) == _sorted(exact["groups"], cols)
    for name in ("drop", "keep"):
        assert (_sorted(dist[name], dist[name].column_names)
                == _sorted(exact[name], exact[name].column_names))
    scores = {mode: np.array([r["score_to_keeper"] for r in _sorted(
        tables[mode]["groups"], ["record_id", "score_to_keeper"])]) for mode in tables}
    np.testing.assert_allclose(scores["distributed"], scores["exact"], atol=1e-5)
