"""`MinePairs` streams its pairs: tables of bounded size whose union is the pair set."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tools.synthetic import clustered_embeddings
from transforms.mine.exact import mine_exact
from transforms.mine.transform import DUPLICATES, NEAR_DUPLICATES, STATS, MinePairs
from transforms.schemas import PAIRS_SCHEMA


def _table(path, n=600, dim=16):
    x = clustered_embeddings(n, dim, topic_size=100, near_fraction=0.3, duplicate_fraction=0.1,
                             seed=21)
    ids = [f"id{(k * 7919) % n:05d}" for k in range(n)]  # rows not in id order
    pq.write_table(pa.table({"record_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(
        pa.array(x.reshape(-1)), dim)}), path)
    order = np.argsort(ids)
    exact = mine_exact(x[order] / np.linalg.norm(x[order], axis=1, keepdims=True), 0.9)
    sorted_ids = np.asarray(ids)[order]
    return {(sorted_ids[i], sorted_ids[j]): float(s)
            for i, j, s in zip(exact.i.tolist(), exact.j.tolist(), exact.score.tolist())}


def _summary(tables):
    """(rows per table, every pair with its score, every row canonical)."""
    pairs = {}
    for t in tables:
        assert t.schema == PAIRS_SCHEMA
        for a, b, s in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            assert a < b and (a, b) not in pairs
            pairs[(a, b)] = s
    return [t.num_rows for t in tables], pairs


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_tables_are_bounded_and_their_union_is_the_pair_set(tmp_path, mode):
    want = _table(tmp_path / "e.parquet")
    dup_t, rows = 0.99, 7
    options = {"nlist": 1, "recall_sample_size": 50} if mode == "approximate" else {}
    got = {}
    with TestPipeline() as p:
        out = (p | beam.Create([str(tmp_path / "e.parquet")])
               | MinePairs(dup_t, 0.9, mode, block_size=64, mining_options=options,
                           rows_per_table=rows))
        for tag in (DUPLICATES, NEAR_DUPLICATES):
            sizes_pairs = (out[tag] | f"All{tag}" >> beam.combiners.ToList()
                           | f"Sum{tag}" >> beam.Map(_summary))
            got[tag] = sizes_pairs
        n_dup = sum(s >= dup_t for s in want.values())
        n_near = len(want) - n_dup
        assert n_dup > 2 * rows and n_near > 2 * rows

        def check(tag, n_want, above):
            def _check(results):
                (sizes, pairs), = results
                assert len(sizes) == -(-n_want // rows) > 2  # several tables, all full but one
                assert max(sizes) == rows and sum(sizes) == n_want
                assert set(pairs) == {k for k, s in want.items() if (s >= dup_t) == above}
                np.testing.assert_allclose([pairs[k] for k in sorted(pairs)],
                                           [min(want[k], 1.0) for k in sorted(pairs)], atol=1e-5)
            return _check

        assert_that(got[DUPLICATES], check(DUPLICATES, n_dup, True), label="Dup")
        assert_that(got[NEAR_DUPLICATES], check(NEAR_DUPLICATES, n_near, False), label="Near")
        assert_that(out[STATS] | beam.Map(lambda s: (s["duplicates"], s["near_duplicates"],
                                                     s["embeddings"], s["mode"])),
                    equal_to([(n_dup, n_near, 600, mode)]), label="Stats")
