"""Run `BuildGroups` on the DirectRunner from the same inputs `build_groups` takes."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.manifest.build import BuildGroups
from transforms.manifest.keeper_rule import parse_keeper_rule
from transforms.manifest.records import Record, keeper_sort_key
from transforms.manifest.reference import build_groups


def records_of(table: pa.Table, rule: str) -> list[tuple[str, Record]]:
    terms = parse_keeper_rule(rule)
    rows = table.to_pylist()
    return [(r["record_id"], Record(r.get("source_uri"), r.get("key"),
                                    keeper_sort_key(terms, r["record_id"], r.get("width"),
                                                    r.get("height"), r.get("file_size")),
                                    "mem://file"))
            for r in rows]


def largest_component(records: pa.Table, pairs, exact: pa.Table | None, threshold: float):
    """(members, pairs) of the largest component of the graph build_groups groups on."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = records.column("record_id").to_pylist()
    index = {rid: k for k, rid in enumerate(ids)}
    keep = pairs.score >= np.float32(threshold)
    edges = set(zip(pairs.i[keep].tolist(), pairs.j[keep].tolist()))
    for a, b in zip(*(exact.column(c).to_pylist() for c in ("record_id_a", "record_id_b"))
                    ) if exact is not None else ():
        if a in index and b in index:
            edges.add((min(index[a], index[b]), max(index[a], index[b])))
    if not ids:
        return 0, 0
    i, j = (np.array([e[k] for e in edges], np.int64) for k in (0, 1))
    graph = coo_matrix((np.ones(i.size), (i, j)), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    pairs_in = np.bincount(labels[i], minlength=sizes.size) if i.size else np.zeros_like(sizes)
    best = max(range(sizes.size), key=lambda c: (sizes[c], pairs_in[c]))
    return int(sizes[best]), int(pairs_in[best])


def expected_and_actual(records: pa.Table, pairs, exact: pa.Table | None, *,
                        max_pairs_in_memory=None, max_rounds=None,
                        components_on_one_worker=False, previous_keepers=None, **settings):
    """Runs both; asserts the Beam outputs equal build_groups' (as multisets of rows).

    Returns build_groups' result and the Beam run's counters (name -> value).
    """
    ids = np.asarray(records.column("record_id").to_pylist(), dtype=object)
    res = build_groups(records, pairs, exact, previous_keepers=previous_keepers, **settings)
    triples = [(ids[i], ids[j], float(s)) for i, j, s in zip(pairs.i, pairs.j, pairs.score)]
    want_keep = [dict(r, line=line) for r, line in zip(res.keep.to_pylist(), res.keep_lines)]
    want_drop = [dict(r, line=line) for r, line in zip(res.drop.to_pylist(), res.drop_lines)]
    want_stats = dict(res.stats)
    extra = {k: v for k, v in (("max_pairs_in_memory", max_pairs_in_memory),
                               ("max_rounds", max_rounds)) if v is not None}
    extra["components_on_one_worker"] = components_on_one_worker
    members, in_component = largest_component(records, pairs, exact, res.stats["group_threshold"])
    want_stats.update(largest_component=members, largest_component_pairs=in_component)
    rule = settings.get("keeper_rule", "-area,-file_size,record_id")

    def check_stats(got):
        assert len(got) == 1
        stats = got[0]
        assert stats["problems"] == []
        assert {k: stats[k] for k in want_stats} == want_stats

    p = TestPipeline()
    inputs = {"records": p | "Records" >> beam.Create(records_of(records, rule)),
              "pairs": p | "Pairs" >> beam.Create(triples),
              "exact_duplicates": p | "Exact" >> beam.Create(
                  exact.to_pylist() if exact is not None else [])}
    if previous_keepers is not None:
        inputs["previous_keepers"] = p | "PreviousKeepers" >> beam.Create(sorted(previous_keepers))
    out = inputs | BuildGroups(**settings, **extra)
    assert_that(out["groups"], equal_to(res.groups.to_pylist()), label="Groups")
    assert_that(out["keep"], equal_to(want_keep), label="Keep")
    assert_that(out["drop"], equal_to(want_drop), label="Drop")
    assert_that(out["stats"], check_stats, label="Stats")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter())["counters"]}
    return res, counters
