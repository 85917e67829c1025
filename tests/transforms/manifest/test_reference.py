import numpy as np
import pyarrow as pa
import pytest

from transforms.manifest.keeper_rule import (
    DEFAULT_KEEPER_RULE,
    keeper_rank,
    parse_keeper_rule,
    resolve_keeper_rule,
)
from transforms.manifest.reference import build_groups
from transforms.mine.pairs import Pairs, canonical_pairs


def _records(ids, width=None, height=None, file_size=None):
    n = len(ids)
    return pa.table({
        "record_id": ids,
        "source_uri": ["mem://s.tar"] * n,
        "key": [f"key-{r}" for r in ids],
        "width": pa.array(width or [100] * n, pa.int32()),
        "height": pa.array(height or [100] * n, pa.int32()),
        "file_size": pa.array(file_size or [1000] * n, pa.int64()),
    })


def _pairs(triples, n):
    i, j, s = zip(*triples)
    return canonical_pairs(np.array(i), np.array(j), np.array(s, np.float32), n)


def test_keeper_rule_order():
    ids = np.array(["c", "a", "b", "d"])
    rank = keeper_rank(ids, width=[10, 10, 20, 10], height=[10, 10, 10, 10],
                       file_size=[5, 5, 1, 9])
    # b has the largest area; then d (larger file); then a < c by id.
    assert [ids[k] for k in np.argsort(rank)] == ["b", "d", "a", "c"]
    assert parse_keeper_rule("file_size") == [("file_size", False), ("record_id", False)]
    with pytest.raises(ValueError):
        parse_keeper_rule("-colour")


def test_no_chaining_and_reasons():
    # a~b 0.95, b~c 0.95, a~c dissimilar; a is the best keeper (largest area).
    rec = _records(["a", "b", "c"], width=[300, 200, 100])
    res = build_groups(rec, _pairs([(0, 1, 0.95), (1, 2, 0.95)], 3))
    drop = {r["record_id"]: r for r in res.drop.to_pylist()}
    assert set(drop) == {"b"} and drop["b"]["keeper_id"] == "a"
    assert drop["b"]["reason"] == "near_duplicate"
    assert res.keep.column("record_id").to_pylist() == ["a", "c"]
    # one component, cut into one group of two (c alone is kept, not listed)
    assert res.stats["components"] == 1 and res.stats["groups"] == 1
    assert res.keep_lines == ["mem://s.tar#key-a", "mem://s.tar#key-c"]
    assert res.drop_lines == ["mem://s.tar#key-b"]


def test_every_member_within_threshold_of_keeper():
    rng = np.random.default_rng(3)
    n = 60
    i = rng.integers(0, n, 200)
    j = rng.integers(0, n, 200)
    s = rng.uniform(0.9, 1.0, 200).astype(np.float32)
    pairs = canonical_pairs(i, j, s, n)
    ids = [f"r{k:03d}" for k in range(n)]
    res = build_groups(_records(ids, width=rng.integers(1, 50, n).tolist()), pairs)
    score = {(ids[a], ids[b]): sc for a, b, sc in zip(pairs.i, pairs.j, pairs.score)}
    for row in res.groups.to_pylist():
        if row["kind"] != "keeper":
            key = tuple(sorted((row["record_id"], row["keeper_id"])))
            assert key in score and score[key] == pytest.approx(row["score_to_keeper"])
            assert row["score_to_keeper"] >= 0.9


def test_manifest_conservation_and_exact_copies():
    rec = _records(["a", "b", "c", "d"], file_size=[10, 20, 30, 40])
    pairs = _pairs([(0, 1, 0.9995), (2, 3, 0.5)], 4)
    copies = pa.table({"record_id_a": ["a", "c"], "record_id_b": ["a2", "c2"],
                       "sha256": ["x", "y"]})
    res = build_groups(rec, pairs, copies)
    keep = set(res.keep.column("record_id").to_pylist())
    drop = {r["record_id"]: r for r in res.drop.to_pylist()}
    assert keep.isdisjoint(drop) and keep | set(drop) == {"a", "b", "c", "d", "a2", "c2"}
    # b (larger file) keeps over a; a's byte copy points at the final keeper b.
    assert {"record_id": "a", "reason": "duplicate", "keeper_id": "b"}.items() <= drop["a"].items()
    assert {"record_id": "a2", "reason": "exact_copy", "keeper_id": "b"}.items() <= drop["a2"].items()
    assert drop["c2"]["reason"] == "exact_copy" and drop["c2"]["keeper_id"] == "c"
    assert res.stats["dropped_exact_copy"] == 2
    kinds = {r["record_id"]: r["kind"] for r in res.groups.to_pylist()}
    assert kinds == {"a": "duplicate", "a2": "exact_copy", "b": "keeper",
                     "c": "keeper", "c2": "exact_copy"}


def test_same_input_any_row_order_same_output():
    rng = np.random.default_rng(0)
    n = 40
    ids = [f"id{k}" for k in range(n)]
    pairs = canonical_pairs(rng.integers(0, n, 80), rng.integers(0, n, 80),
                            rng.uniform(0.9, 1.0, 80).astype(np.float32), n)
    sizes = rng.integers(1, 4, n).tolist()  # many ties, broken by record_id
    res1 = build_groups(_records(ids, width=sizes), pairs)
    perm = rng.permutation(n)
    inv = np.argsort(perm)
    rec2 = _records([ids[k] for k in perm], width=[sizes[k] for k in perm])
    pairs2 = canonical_pairs(inv[pairs.i], inv[pairs.j], pairs.score, n)
    res2 = build_groups(rec2, pairs2)
    assert res1.groups.equals(res2.groups)
    assert res1.keep.equals(res2.keep) and res1.drop.equals(res2.drop)


def test_duplicates_only_when_near_not_dropped():
    rec = _records(["a", "b", "c"])
    res = build_groups(rec, _pairs([(0, 1, 0.95), (0, 2, 0.9999)], 3), drop_near_duplicates=False)
    assert res.drop.column("record_id").to_pylist() == ["c"]


def test_copy_of_failed_record_is_counted_not_kept_or_dropped():
    copies = pa.table({"record_id_a": ["x"], "record_id_b": ["y"], "sha256": ["h"]})
    res = build_groups(_records(["a"]), Pairs(np.empty(0, np.int64), np.empty(0, np.int64),
                                              np.empty(0, np.float32)), copies)
    assert res.keep.column("record_id").to_pylist() == ["a"] and res.drop.num_rows == 0
    assert res.stats["copies_of_unembedded_records"] == 1


def test_every_manifest_row_is_located_byte_copies_included():
    """Byte copies are not embedded: their location comes from exact_duplicates."""
    rec = _records(["a", "b"], file_size=[10, 20])
    copies = pa.table({"record_id_a": ["a", "b"], "record_id_b": ["a2", "b2"], "sha256": ["x", "y"],
                       "source_uri_a": ["mem://s.tar"] * 2, "key_a": ["key-a", "key-b"],
                       "source_uri_b": ["/img/a copy.jpg", "mem://t.tar"],
                       "key_b": ["/img/a copy.jpg", "key-b"]})
    res = build_groups(rec, _pairs([(0, 1, 0.9995)], 2), copies)
    rows = {r["record_id"]: r for t in (res.keep, res.drop, res.groups) for r in t.to_pylist()}
    assert {r: (v["source_uri"], v["key"]) for r, v in rows.items()} == {
        "a": ("mem://s.tar", "key-a"), "b": ("mem://s.tar", "key-b"),
        "a2": ("/img/a copy.jpg", "/img/a copy.jpg"), "b2": ("mem://t.tar", "key-b")}
    drop = {r["record_id"]: r for r in res.drop.to_pylist()}
    assert (drop["a2"]["keeper_source_uri"], drop["a2"]["keeper_key"]) == ("mem://s.tar", "key-b")
    assert res.keep_lines == ["mem://s.tar#key-b"]
    # one line per dropped row, in drop.parquet's order; an image file is its uri
    assert res.drop_lines == ["mem://s.tar#key-a", "/img/a copy.jpg", "mem://t.tar#key-b"]
    assert res.stats["rows_without_source_uri"] == 0


def test_a_table_without_sizes_uses_what_it_has():
    rec = pa.table({"record_id": ["b", "a", "c"]})
    rule, skipped = resolve_keeper_rule(DEFAULT_KEEPER_RULE, rec.column_names)
    assert (rule, skipped) == ("record_id", ["area", "file_size"])
    assert resolve_keeper_rule("-width,record_id", ["record_id", "width"]) == ("-width,record_id", [])
    res = build_groups(rec, _pairs([(0, 1, 0.9995)], 3), keeper_rule=rule)
    assert res.keep.column("record_id").to_pylist() == ["a", "c"]  # a < b breaks the tie
    assert res.keep.column("source_uri").null_count == 2
    assert res.keep_lines == ["a", "c"] and res.drop_lines == ["b"]
    with pytest.raises(ValueError, match="needs column file_size"):
        resolve_keeper_rule("-file_size", ["record_id", "width", "height"])
    with pytest.raises(ValueError, match="needs column width"):
        build_groups(rec, _pairs([(0, 1, 0.9995)], 3), keeper_rule="-area")


def test_copies_from_an_older_exact_duplicates_table_are_kept_with_null_location():
    old = pa.table({"record_id_a": ["a"], "record_id_b": ["a2"], "sha256": ["x"]})
    res = build_groups(_records(["a"]), Pairs(np.empty(0, np.int64), np.empty(0, np.int64),
                                              np.empty(0, np.float32)), old)
    (row,) = res.drop.to_pylist()
    assert row["record_id"] == "a2" and row["source_uri"] is None and row["key"] is None
    assert row["keeper_source_uri"] == "mem://s.tar" and res.drop_lines == ["a2"]
    assert res.stats["rows_without_source_uri"] == 1


def test_a_byte_copy_edge_repeating_a_mined_pair_keeps_the_larger_score():
    # a and b are byte copies (both embedded) and also a mined duplicate pair of 0.9995:
    # the edge is 1.0 (max), not 1.9995 (the sum).
    rec = _records(["a", "b"], width=[300, 200])
    exact = pa.table({"record_id_a": ["a"], "record_id_b": ["b"], "sha256": ["h"]})
    res = build_groups(rec, _pairs([(0, 1, 0.9995)], 2), exact)
    (row,) = [r for r in res.groups.to_pylist() if r["record_id"] == "b"]
    assert row["score_to_keeper"] == 1.0 and row["kind"] == "duplicate"
    res = build_groups(rec, _pairs([(0, 1, 0.95)], 2), exact)
    (row,) = [r for r in res.groups.to_pylist() if r["record_id"] == "b"]
    assert row["score_to_keeper"] == 1.0
