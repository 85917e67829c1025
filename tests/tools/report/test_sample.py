"""The report's bounded, seeded choices from a run's tables (tools/report/sample.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tools.report import sample as S
from transforms import schemas


def _pairs(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.uniform(0.9, 1.0, n - 5), [1.0, 0.999, 0.98, 0.95, 0.9]])
    return pa.table({"record_id_a": [f"a{i:05d}" for i in range(n)],
                     "record_id_b": [f"b{i:05d}" for i in range(n)],
                     "score": scores.astype(np.float32)}, schema=schemas.PAIRS_SCHEMA)


def test_bands_run_from_the_lowest_threshold_and_drop_edges_below_it():
    bands = S.score_bands((0.95, 0.999, 0.98), 0.9)
    assert [(b.low, b.high) for b in bands] == [(0.999, None), (0.98, 0.999), (0.95, 0.98),
                                                (0.9, 0.95)]
    assert [b.low for b in S.score_bands((0.999, 0.98, 0.95), 0.96)] == [0.999, 0.98, 0.96]
    scores = np.array([1.0001, 0.999, 0.9989, 0.98, 0.95, 0.9, 0.89])
    assert S.band_index(scores, bands).tolist() == [0, 0, 1, 1, 2, 3, -1]


def test_pair_sample_is_seeded_and_independent_of_file_and_row_order(tmp_path):
    table = _pairs(3000)
    pq.write_table(table, tmp_path / "one.parquet")
    split = tmp_path / "split"
    split.mkdir()
    order = np.random.default_rng(1).permutation(len(table))
    shuffled = table.take(pa.array(order))
    pq.write_table(shuffled.slice(0, 1700), split / "part-1.parquet", row_group_size=300)
    pq.write_table(shuffled.slice(1700), split / "part-0.parquet", row_group_size=500)
    settings = S.ReportSettings(pairs_per_band=5, bins=20)

    one = S.scan_pairs([str(tmp_path / "one.parquet")], 0.9, settings)
    two = S.scan_pairs([str(split)], 0.9, settings)
    other = S.scan_pairs([str(split)], 0.9, S.ReportSettings(pairs_per_band=5, bins=20, seed=7))
    for a, b in zip(one.samples, two.samples):
        assert a[["record_id_a", "record_id_b"]].equals(b[["record_id_a", "record_id_b"]])
    assert any(not a.record_id_a.equals(c.record_id_a) for a, c in zip(one.samples, other.samples))
    assert one.counts.tolist() == two.counts.tolist() and one.counts.sum() == 3000
    scores = table.column("score").to_numpy()  # float32: its 0.9 is the lowest band's
    f = np.float32
    assert one.band_counts == [int((scores >= f(0.999)).sum()),
                               int(((scores >= f(0.98)) & (scores < f(0.999))).sum()),
                               int(((scores >= f(0.95)) & (scores < f(0.98))).sum()),
                               int((scores < f(0.95)).sum())]
    assert sum(one.band_counts) == 3000
    for band, rows in zip(one.bands, one.samples):
        assert len(rows) == 5
        assert (rows.score >= band.low).all() and (band.high is None or (rows.score < band.high).all())
        assert rows.score.is_monotonic_decreasing


def test_no_pair_tables_give_empty_bands(tmp_path):
    scan = S.scan_pairs([str(tmp_path / "missing.parquet")], 0.9, S.ReportSettings())
    assert scan.counts.sum() == 0 and [len(s) for s in scan.samples] == [0, 0, 0, 0]


def _groups(sizes: list[int]) -> pa.Table:
    rows = []
    for g, size in enumerate(sizes):
        keeper = f"g{g}-m000"
        for m in range(size):
            rid = f"g{g}-m{m:03d}"
            rows.append({"record_id": rid, "source_uri": f"/data/{g}.tar", "key": f"{m:03d}",
                         "group_id": g, "keeper_id": keeper,
                         "score_to_keeper": 1.0 if m == 0 else 1.0 - m / 1000,
                         "kind": "keeper" if m == 0 else "near_duplicate", "component_id": g})
    rows.reverse()  # keepers last: the order in the file does not matter
    return pa.Table.from_pylist(rows, schema=schemas.GROUPS_SCHEMA)


def test_largest_groups_keeper_first_then_a_capped_sample(tmp_path):
    path = tmp_path / "groups.parquet"
    pq.write_table(_groups([3, 40, 2, 25, 40]), path, row_group_size=16)
    top, members = S.largest_groups(str(path), S.ReportSettings(groups=3, members_per_group=10))
    assert top == [(1, 40), (4, 40), (3, 25)]
    assert members.group_id.drop_duplicates().tolist() == [1, 4, 3]
    for g, rows in members.groupby("group_id", sort=False):
        assert len(rows) == 11 and rows.iloc[0].kind == "keeper"
        assert rows.iloc[0].record_id == f"g{g}-m000"
        assert rows.iloc[1:].score_to_keeper.is_monotonic_decreasing


def test_errors_by_reason_with_capped_examples_and_whole_file_errors(tmp_path):
    rows = [{"record_id": f"r{i}", "source_uri": f"/d/{i}.jpg", "key": f"/d/{i}.jpg",
             "stage": "decode", "reason": "truncated" if i % 3 else "corrupt", "message": "m"}
            for i in range(30)]
    rows.append({"record_id": None, "source_uri": "/d/s.tar", "key": None, "stage": "read",
                 "reason": "shard_truncated", "message": "non-zero data"})
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.ERRORS_SCHEMA),
                   tmp_path / "errors.parquet", row_group_size=7)
    scan = S.scan_errors(str(tmp_path / "errors.parquet"), S.ReportSettings(examples_per_reason=3))
    assert scan.by_reason == {"truncated": 20, "corrupt": 10, "shard_truncated": 1}
    assert scan.by_stage == {"decode": 30, "read": 1}
    assert scan.examples.reason.value_counts().to_dict() == {"corrupt": 3, "truncated": 3,
                                                             "shard_truncated": 1}
    assert scan.file_errors.source_uri.tolist() == ["/d/s.tar"]


def test_byte_copy_groups_largest_first(tmp_path):
    rows = [{"record_id_a": a, "record_id_b": f"{a}-c{i}", "sha256": a * 4,
             "source_uri_a": f"/d/{a}.jpg", "key_a": a, "source_uri_b": f"/d/{a}-{i}.jpg",
             "key_b": f"{a}-{i}"} for a, n in (("x", 2), ("y", 9), ("z", 1)) for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.EXACT_DUPLICATES_SCHEMA),
                   tmp_path / "exact.parquet")
    total, groups = S.byte_copy_groups(str(tmp_path / "exact.parquet"),
                                       S.ReportSettings(byte_copy_groups=2, copies_per_group=4))
    assert total == 3 and [(g["record_id"], g["copies"]) for g in groups] == [("y", 9), ("x", 2)]
    assert len(groups[0]["rows"]) == 4 and groups[0]["source_uri"] == "/d/y.jpg"


def test_unclean_shards_counted_and_capped(tmp_path):
    rows = [{"source_uri": f"/d/{i:02d}.tar", "input_kind": "tar", "records_read": 3,
             "images_found": 3, "errors": 0, "ended_cleanly": i % 4 != 0} for i in range(20)]
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.SHARDS_SCHEMA),
                   tmp_path / "shards.parquet", row_group_size=6)
    total, shown = S.unclean_shards(str(tmp_path / "shards.parquet"), cap=3)
    assert total == 5 and [r["source_uri"] for r in shown] == ["/d/00.tar", "/d/04.tar",
                                                               "/d/08.tar"]


@pytest.mark.parametrize("seed", [0, 12345])
def test_priorities_depend_on_the_seed_only(seed):
    keys = ["a", "b", "c"]
    assert S.priorities(keys, seed).tolist() == S.priorities(pa.array(keys), seed).tolist()
    assert S.priorities(keys, seed).tolist() != S.priorities(keys, seed + 1).tolist()


def test_count_values_over_many_batches():
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 50, 100) for _ in range(30)]
    values, counts = S.count_values(iter(arrays))
    expect = np.unique(np.concatenate(arrays), return_counts=True)
    assert values.tolist() == expect[0].tolist() and counts.tolist() == expect[1].tolist()
