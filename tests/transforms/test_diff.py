"""`change_of` for every pair of statuses, the columnar pair diff, and DiffRecords / DiffPairs
on the DirectRunner."""

import pickle

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms import diff
from transforms.diff import Status


def _pairs(kind, side, ends):
    return diff.pair_rows(pa.table({"record_id_a": [a for a, _ in ends],
                                    "record_id_b": [b for _, b in ends]}), kind, side)


def _s(status, keeper="k", reason="r"):
    return Status(status, reason, None if status == diff.ERROR else keeper, "mem://x", "x")


def _statuses(side, statuses):
    """`status_rows` tables, one per status, of `(record_id, Status)`."""
    tables = []
    for status in (diff.KEPT, diff.DROPPED, diff.ERROR):
        rows = [(rid, st) for rid, st in statuses if st.status == status]
        batch = pa.table({"record_id": [r for r, _ in rows],
                          "source_uri": [st.source_uri for _, st in rows],
                          "key": [st.key for _, st in rows], "reason": [st.reason for _, st in rows],
                          "keeper_id": [st.keeper_id for _, st in rows]},
                         schema=pa.schema([(n, pa.string()) for n in diff.STATUS_COLUMNS]))
        tables.append(diff.status_rows(batch, status, side))
    return tables


@pytest.mark.parametrize("before, after, change", [
    (None, _s("kept"), "new"), (None, _s("error"), "new"), (_s("dropped"), None, "removed"),
    (_s("kept"), _s("dropped"), "kept_to_dropped"), (_s("dropped"), _s("kept"), "dropped_to_kept"),
    (_s("dropped", "a"), _s("dropped", "b"), "keeper_changed"),
    (_s("dropped", "a"), _s("dropped", "a"), None), (_s("kept"), _s("kept"), None),
    (_s("kept"), _s("error"), "now_failing"), (_s("dropped"), _s("error"), "now_failing"),
    (_s("error"), _s("kept"), "no_longer_failing"), (_s("error"), _s("error"), None),
    (None, None, None),
])
def test_change_of(before, after, change):
    assert diff.change_of(before, after) == change


def test_diff_records_and_pairs_on_the_engine():
    with TestPipeline() as p:
        before = _statuses(diff.BEFORE, [("a", _s("kept", "a")), ("b", _s("dropped", "a")),
                                         ("gone", _s("kept", "gone"))])
        after = _statuses(diff.AFTER, [("a", _s("dropped", "n")), ("b", _s("dropped", "n")),
                                       ("n", _s("kept", "n")), ("m", _s("kept", "m"))])
        out = (p | "Statuses" >> beam.Create(before + after)
               | "ByRecord" >> beam.FlatMap(lambda rows: diff.hash_buckets(rows, ("record_id",), 3))
               | diff.DiffRecords())
        assert_that(out["changes"] | beam.Map(lambda r: (r["record_id"], r["change"])),
                    equal_to([("a", "kept_to_dropped"), ("b", "keeper_changed"),
                              ("gone", "removed"), ("n", "new"), ("m", "new")]), label="Changes")
        before_pairs = [_pairs("duplicate", diff.BEFORE, [("b", "a")]),
                        _pairs("near_duplicate", diff.BEFORE, [("a", "gone")])]
        after_pairs = [_pairs("near_duplicate", diff.AFTER, [("a", "b")]),
                       _pairs("duplicate", diff.AFTER, [("a", "n")])]
        pairs = (p | "Pairs" >> beam.Create(before_pairs + after_pairs)
                 | beam.FlatMap(lambda rows: diff.hash_buckets(rows, ("lo", "hi"), 3))
                 | diff.DiffPairs())
        counts = (out["facts"], pairs) | beam.Flatten() | diff.CountFacts()
        want = dict.fromkeys(diff.RECORD_FACTS + diff.CHANGES + diff.PAIR_FACTS, 0)
        want.update(records_before=3, records_after=4, new=2, removed=1, kept_to_dropped=1,
                    keeper_changed=1, new_in_groups_with_old=1, pairs_before=2, pairs_after=2,
                    pairs_new=1, pairs_vanished=1, pairs_changed_kind=1)
        assert_that(counts, equal_to([want]), label="Counts")


def _facts(*tables):
    return dict(diff.pair_facts(tables))


def test_pair_facts_counts_each_pair_once_whichever_way_round_and_table():
    got = _facts(
        _pairs("duplicate", diff.BEFORE, [("a", "b"), ("c", "d"), ("e", "f"), ("x", "y")]),
        _pairs("near_duplicate", diff.BEFORE, [("b", "a"), ("f", "e")]),  # also a duplicate
        _pairs("near_duplicate", diff.AFTER, [("b", "a"), ("d", "c"), ("g", "h")]),
        _pairs("duplicate", diff.AFTER, [("e", "f"), ("h", "g"), ("c", "d")]))
    # a-b: duplicate -> near (changed); c-d: duplicate both (listed twice after);
    # e-f: duplicate both; x-y vanished; g-h new (a duplicate: listed in both tables)
    assert got == {"pairs_before": 4, "pairs_after": 4, "pairs_new": 1, "pairs_vanished": 1,
                   "pairs_changed_kind": 1}


def test_pair_facts_of_nothing_is_zero():
    assert _facts() == dict.fromkeys(diff.PAIR_FACTS, 0)
    assert set(_facts(_pairs("duplicate", diff.AFTER, [])).values()) == {0}


def test_pair_buckets_keep_each_pair_in_one_bucket_for_both_runs():
    ends = [(f"id{i}", f"id{j}") for i in range(60) for j in range(i + 1, 60, 7)]
    before = _pairs("duplicate", diff.BEFORE, ends)
    after = _pairs("near_duplicate", diff.AFTER, [(b, a) for a, b in ends[::-1]])
    where = {}
    for side in (before, after):
        seen = 0
        for bucket, rows in diff.hash_buckets(side, ("lo", "hi"), 16):
            seen += rows.num_rows
            for lo, hi in zip(rows.column("lo").to_pylist(), rows.column("hi").to_pylist()):
                assert where.setdefault((lo, hi), bucket) == bucket
        assert seen == side.num_rows
    sizes = [rows.num_rows for _, rows in diff.hash_buckets(before, ("lo", "hi"), 16)]
    assert len(sizes) == 16 and max(sizes) < 3 * before.num_rows / 16
    by_bucket = {}
    for side in (before, after):
        for bucket, rows in diff.hash_buckets(side, ("lo", "hi"), 16):
            by_bucket.setdefault(bucket, []).append(rows)
    totals = {}
    for tables in by_bucket.values():
        for name, n in diff.pair_facts(tables):
            totals[name] = totals.get(name, 0) + n
    assert totals == _facts(before, after) == {
        "pairs_before": len(ends), "pairs_after": len(ends), "pairs_new": 0,
        "pairs_vanished": 0, "pairs_changed_kind": len(ends)}


def test_a_bucket_is_a_copy_not_a_slice_of_the_batch():
    rows = _pairs("duplicate", diff.BEFORE, [(f"a{i:06d}", f"b{i:06d}") for i in range(20000)])
    whole = len(pickle.dumps(rows))
    assert all(len(pickle.dumps(part)) < whole / 4 for _, part in diff.hash_buckets(rows, ("lo", "hi"), 8))
