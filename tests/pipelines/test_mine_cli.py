"""`clipdedup mine` on a generated embeddings table, in every mining mode."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from tools.synthetic import clustered_embeddings
from transforms.mine.exact import mine_exact
from transforms.schemas import EXACT_DUPLICATES_SCHEMA, embeddings_schema


def _embeddings_run(root, n=500, dim=16):
    """A published-run-like folder: embeddings/ plus exact_duplicates.parquet."""
    x = clustered_embeddings(n, dim, topic_size=100, near_fraction=0.2, duplicate_fraction=0.05,
                             seed=13)
    ids = [f"r{k:04d}" for k in range(n)]
    table = pa.table({
        "record_id": ids, "source_uri": ["mem://s"] * n, "key": [f"key{k}" for k in range(n)],
        "sha256": [f"h{k}" for k in range(n)],
        "width": pa.array(np.full(n, 32), pa.int32()), "height": pa.array(np.full(n, 32), pa.int32()),
        "file_size": pa.array(np.arange(n) % 7, pa.int64()), "model": ["m"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
    }, schema=embeddings_schema(dim))
    os.makedirs(root / "embeddings")
    pq.write_table(table, root / "embeddings" / "part-00000-of-00001.parquet")
    pq.write_table(pa.table({"record_id_a": ["r0003"], "record_id_b": ["r9999"],
                             "sha256": ["h3"], "source_uri_a": ["mem://s"], "key_a": ["key3"],
                             "source_uri_b": ["mem://copies"], "key_b": ["key3"]},
                            schema=EXACT_DUPLICATES_SCHEMA),
                   root / "exact_duplicates.parquet")
    exact = mine_exact(x, 0.9)
    return ids, {(ids[i], ids[j]) for i, j in zip(exact.i.tolist(), exact.j.tolist())}


@pytest.mark.parametrize("mode", ["exact", "approximate", "distributed"])
def test_mine_writes_pairs_groups_and_manifest(tmp_path, mode):
    ids, want = _embeddings_run(tmp_path / "src")
    assert cli.run(["-q", "mine", "--embeddings", str(tmp_path / "src" / "embeddings"),
                    "--output", str(tmp_path / "out"), "--run-id", "r1", "--mode", mode]) == 0
    run = tmp_path / "out" / "r1"
    assert (run / "_SUCCESS").exists()
    pairs = pa.concat_tables([pq.read_table(run / "duplicates.parquet"),
                              pq.read_table(run / "near_duplicates.parquet")])
    got = set(zip(pairs.column("record_id_a").to_pylist(), pairs.column("record_id_b").to_pylist()))
    assert got == want and len(got) == pairs.num_rows
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mining"]["mode"] == mode
    assert summary["mining"]["recall_sampled"] == 1.0
    keep = pq.read_table(run / "keep.parquet").column("record_id").to_pylist()
    drop = pq.read_table(run / "drop.parquet").to_pylist()
    assert sorted(keep + [d["record_id"] for d in drop]) == sorted(ids + ["r9999"])
    assert {"record_id": "r9999", "reason": "exact_copy"}.items() <= next(
        d for d in drop if d["record_id"] == "r9999").items()
    assert (run / "keep.txt").read_text().splitlines() == [f"mem://s#key{int(r[1:])}" for r in keep]
    assert "mem://copies#key3" in (run / "drop.txt").read_text().splitlines()
    assert summary["groups"]["kept"] == len(keep) and summary["counts"]["dropped"] == len(drop)
    assert pq.read_table(run / "groups.parquet").num_rows > 0
