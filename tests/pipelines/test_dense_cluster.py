"""A dense cluster (every member within the near threshold of every other) mined
and grouped on the engine, with the launcher in a process of its own.

The launcher submits to `tools.local_engine` (a Beam job service in another
process) as it would submit to Dataflow, so its peak RSS is
its own. Groups and the manifest must equal `build_groups` (the launcher-side
reference) on the same pairs.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tools.local_engine import LocalEngine, run_launcher
from transforms.manifest.reference import build_groups, pairs_from_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER_LIMIT = 1 << 30


def write_dense_cluster(folder: str, n: int, cluster: int, dim: int, seed: int = 0) -> str:
    """`n` unit vectors, the first `cluster` of them near-identical (all pairs >= 0.99),
    the rest random in `dim` dimensions (no pair near 0.9); with sizes and locations."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:cluster] = x[0] + 0.01 * rng.normal(size=(cluster, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(n)  # cluster members spread over the id space
    os.makedirs(folder, exist_ok=True)
    table = pa.table({
        "record_id": pa.array([f"{k:020x}" for k in order]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        "source_uri": pa.array([f"gs://b/shard-{k // 1000:05d}.tar" for k in range(n)]),
        "key": pa.array([f"img{k:07d}" for k in range(n)]),
        "width": pa.array(rng.integers(100, 120, n), pa.int64()),
        "height": pa.array(np.full(n, 100), pa.int64()),
        "file_size": pa.array(rng.integers(1000, 1100, n), pa.int64()),
    })
    for part in range(4):  # several files, as an embed job writes them
        pq.write_table(table.slice(part * n // 4, n // 4 + (n % 4 if part == 3 else 0)),
                       os.path.join(folder, f"part-{part}.parquet"))
    return folder


def _sorted(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["record_id"])


def mine_on_engine(tmp_path, n: int, cluster: int, dim: int, timeout: float = 1500
                   ) -> tuple[dict, int, str]:
    embeddings = write_dense_cluster(str(tmp_path / "embeddings"), n, cluster, dim)
    with LocalEngine() as engine:
        rc, launcher_rss, output = run_launcher(
            [sys.executable, "-m", "pipelines.cli", "mine", "--embeddings", embeddings,
             "--output", str(tmp_path / "out"), "--run-id", "dense", "--mode", "exact", "-q",
             *engine.beam_args],
            env=dict(os.environ, PYTHONPATH=ROOT), timeout=timeout)
    assert rc == 0, output[-3000:]
    run_folder = tmp_path / "out" / "dense"
    summary = json.loads((run_folder / "summary.json").read_text())
    return summary, launcher_rss, str(run_folder)


def check_against_reference(run_folder: str, embeddings: str) -> None:
    records = pq.read_table(embeddings, columns=["record_id", "source_uri", "key", "width",
                                                 "height", "file_size"]).sort_by("record_id")
    pairs = pa.concat_tables([pq.read_table(os.path.join(run_folder, f"{t}.parquet"))
                              for t in ("duplicates", "near_duplicates")])
    reference = build_groups(records, pairs_from_table(pairs, records),
                             duplicate_threshold=0.999, near_duplicate_threshold=0.90)
    for name, expected in (("groups", reference.groups), ("keep", reference.keep),
                           ("drop", reference.drop)):
        got = pq.read_table(os.path.join(run_folder, f"{name}.parquet"))
        assert _sorted(got) == _sorted(expected), name


@pytest.mark.slow
def test_dense_cluster_200k_launcher_under_1_gib(tmp_path):
    n, cluster = 200_000, 5_000
    summary, launcher_rss, run_folder = mine_on_engine(tmp_path, n, cluster, dim=32, timeout=4 * 3600)
    pairs = cluster * (cluster - 1) // 2
    assert summary["counts"]["duplicates"] + summary["counts"]["near_duplicates"] == pairs
    groups = summary["groups"]
    assert groups["largest_component"] == cluster
    assert groups["largest_component_pairs"] == pairs
    assert launcher_rss < LAUNCHER_LIMIT, f"launcher peak RSS {launcher_rss / 2**20:.0f} MiB"
    check_against_reference(run_folder, str(tmp_path / "embeddings"))


def test_dense_cluster_small_on_the_engine(tmp_path):
    n, cluster = 3_000, 400
    summary, launcher_rss, run_folder = mine_on_engine(tmp_path, n, cluster, dim=32)
    pairs = cluster * (cluster - 1) // 2
    assert summary["counts"]["duplicates"] + summary["counts"]["near_duplicates"] == pairs
    assert summary["groups"]["largest_component"] == cluster
    assert summary["groups"]["largest_component_pairs"] == pairs
    check_against_reference(run_folder, str(tmp_path / "embeddings"))
