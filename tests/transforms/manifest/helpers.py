"""Run `BuildGroups` on the DirectRunner from the same inputs `build_groups` takes."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.manifest.build import BuildGroups
from transforms.manifest.records import Record, keeper_sort_key
from transforms.mining.groups import build_groups, parse_keeper_rule


def records_of(table: pa.Table, rule: str) -> list[tuple[str, Record]]:
    terms = parse_keeper_rule(rule)
    rows = table.to_pylist()
    return [(r["record_id"], Record(r.get("source_uri"), r.get("key"),
                                    keeper_sort_key(terms, r["record_id"], r.get("width"),
                                                    r.get("height"), r.get("file_size")),
                                    "mem://file"))
            for r in rows]


def expected_and_actual(records: pa.Table, pairs, exact: pa.Table | None, *,
                        max_pairs_in_memory=None, **settings):
    """Runs both; asserts the Beam outputs equal build_groups' (as multisets of rows)."""
    ids = np.asarray(records.column("record_id").to_pylist(), dtype=object)
    res = build_groups(records, pairs, exact, **settings)
    triples = [(ids[i], ids[j], float(s)) for i, j, s in zip(pairs.i, pairs.j, pairs.score)]
    want_keep = [dict(r, line=line) for r, line in zip(res.keep.to_pylist(), res.keep_lines)]
    want_drop = [dict(r, line=line) for r, line in zip(res.drop.to_pylist(), res.drop_lines)]
    want_stats = dict(res.stats)
    extra = {} if max_pairs_in_memory is None else {"max_pairs_in_memory": max_pairs_in_memory}
    rule = settings.get("keeper_rule", "-area,-file_size,record_id")
    seen_stats = []

    def check_stats(got):
        assert len(got) == 1
        stats = got[0]
        assert stats["problems"] == []
        assert {k: stats[k] for k in want_stats} == want_stats
        seen_stats.append(stats)

    with TestPipeline() as p:
        out = {"records": p | "Records" >> beam.Create(records_of(records, rule)),
               "pairs": p | "Pairs" >> beam.Create(triples),
               "exact_duplicates": p | "Exact" >> beam.Create(
                   exact.to_pylist() if exact is not None else [])} | BuildGroups(
                       **settings, **extra)
        assert_that(out["groups"], equal_to(res.groups.to_pylist()), label="Groups")
        assert_that(out["keep"], equal_to(want_keep), label="Keep")
        assert_that(out["drop"], equal_to(want_drop), label="Drop")
        assert_that(out["stats"], check_stats, label="Stats")
    return res, seen_stats
