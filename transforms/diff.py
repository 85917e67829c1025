"""What changed between two runs, as Beam transforms (`clipdedup diff`, `run --previous`).

    keep / drop / errors tables of both runs -> ReadStatuses (Arrow tables, by bucket)
        -> DiffRecords -> changes rows (one per record whose status changed), count facts
    duplicates / near_duplicates of both runs -> ReadPairs (Arrow tables, by bucket)
        -> DiffPairs -> count facts
    facts -> CountFacts -> one dict

A record's status in a run is `kept` (keep table), `dropped` (drop table) or
`error` (errors table, by record_id; whole-file failures have none and are
counted by the run's summary instead). Records are matched by `record_id`,
which is a hash of where the record was found (`transforms.records`), so the
same file member has the same id every night.

Both runs' rows move as Arrow tables, not one Beam element per record or
pair: each row goes to a bucket by a hash of its record id (or of the
pair's two ids, `hash_buckets`), so one record's or one pair's rows of both
runs meet in one bucket, and a worker compares one bucket at a time
(`record_facts`, `pair_facts`: one columnar aggregation for pairs, which a
dense cluster makes millions of). Only the group counts of records in
groups of two or more meet again, by keeper. A worker holds one bucket, so
two runs of any size can be compared. The functions (`status_rows`,
`record_facts`, `pair_rows`, `pair_facts`, `as_counts`) are public: the
launcher runs them itself, all rows in one bucket, for small runs
(`pipelines.diff_pipeline.diff_in_process`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.string_hash import mix, string_hashes

KEPT, DROPPED, ERROR = "kept", "dropped", "error"
NEW, REMOVED = "new", "removed"
KEPT_TO_DROPPED, DROPPED_TO_KEPT, KEEPER_CHANGED = "kept_to_dropped", "dropped_to_kept", "keeper_changed"
NOW_FAILING, NO_LONGER_FAILING = "now_failing", "no_longer_failing"
CHANGES = (NEW, REMOVED, KEPT_TO_DROPPED, DROPPED_TO_KEPT, KEEPER_CHANGED, NOW_FAILING,
           NO_LONGER_FAILING)
# Count facts DiffRecords and DiffPairs emit, besides one per change kind.
RECORD_FACTS = ("records_before", "records_after", "new_in_groups_with_old")
PAIR_FACTS = ("pairs_before", "pairs_after", "pairs_new", "pairs_vanished", "pairs_changed_kind")
_PRIORITY = {KEPT: 0, DROPPED: 1, ERROR: 2}  # one status per record, should a table repeat it
BEFORE, AFTER = "before", "after"  # the earlier and the later run


class Status(NamedTuple):
    """A record's place in one run."""

    status: str  # kept / dropped / error
    reason: str | None  # keep/drop reason, or the error's reason code
    keeper_id: str | None  # the record kept for it (itself when kept); None for errors
    source_uri: str | None
    key: str | None


def status_rows(batch, status: str, side: str) -> pa.Table:
    """One keep / drop / errors batch of one run -> its rows that name a record (a whole
    file's failure does not): `record_id, source_uri, key, reason, keeper_id` (null for
    errors), `status` and `side` (`before` / `after`)."""
    n = batch.num_rows
    read = status_columns(status)

    def column(name):
        if name in read and name in batch.column_names:
            return batch.column(name).cast(pa.string())
        return pa.nulls(n, pa.string())

    rows = pa.table({name: column(name) for name in STATUS_COLUMNS}
                    | {"status": pa.array([status] * n, pa.string()),
                       "side": pa.array([side] * n, pa.string())})
    return rows.filter(pc.is_valid(rows.column("record_id")))


STATUS_COLUMNS = ("record_id", "source_uri", "key", "reason", "keeper_id")


def status_columns(status: str) -> list[str]:
    """The columns of a run's table of `status` rows that `status_rows` reads: an error
    row has no keeper."""
    return [name for name in STATUS_COLUMNS if not (name == "keeper_id" and status == ERROR)]


class ReadStatuses(beam.PTransform):
    """A run's keep / drop / errors tables -> `(bucket, status_rows table)`, a record's
    bucket a hash of its id (`hash_buckets`).

    Args:
        tables: `(status, path)` of each table the run has (`KEPT`, `DROPPED`, `ERROR`).
    """

    def __init__(self, tables: list[tuple[str, str]], side: str, buckets: int):
        super().__init__()
        self._tables = list(tables)
        self._side, self._buckets = side, max(1, int(buckets))

    def expand(self, pbegin):
        reads = []
        for status, path in self._tables:
            label = status.capitalize()
            reads.append(pbegin
                         | f"Read{label}" >> beam.io.ReadFromParquetBatched(
                             path, columns=status_columns(status), validate=False)
                         | f"{label}Rows" >> beam.FlatMap(
                             _status_buckets, status, self._side, self._buckets))
        return reads | "AllStatuses" >> beam.Flatten()


def _status_buckets(batch, status: str, side: str, buckets: int):
    return hash_buckets(status_rows(batch, status, side), ("record_id",), buckets)


def _one(statuses: Iterable[Status]) -> Status | None:
    return min(statuses, key=lambda s: _PRIORITY[s.status], default=None)


def change_of(before: Status | None, after: Status | None) -> str | None:
    """The change kind between a record's two statuses, or None when it did not change."""
    if before is None:
        return NEW if after is not None else None
    if after is None:
        return REMOVED
    if after.status == ERROR:
        return NOW_FAILING if before.status != ERROR else None
    if before.status == ERROR:
        return NO_LONGER_FAILING
    if before.status == KEPT and after.status == DROPPED:
        return KEPT_TO_DROPPED
    if before.status == DROPPED and after.status == KEPT:
        return DROPPED_TO_KEPT
    if before.status == DROPPED and before.keeper_id != after.keeper_id:
        return KEEPER_CHANGED
    return None


def change_row(record_id: str, change: str, before: Status | None, after: Status | None) -> dict:
    """The `changes` row (CHANGES_SCHEMA) of a record; its location as of the later run."""
    where = after or before
    return {"record_id": record_id, "source_uri": where.source_uri, "key": where.key,
            "change": change,
            "status_before": before and before.status, "status_after": after and after.status,
            "reason_before": before and before.reason, "reason_after": after and after.reason,
            "keeper_before": before and before.keeper_id,
            "keeper_after": after and after.keeper_id}


GROUP_COUNTS = "group_counts"


def classify(element):
    """Per record id: its changes row (main output), count facts, and its group's counts."""
    rid, g = element
    before, after = _one(g["before"]), _one(g["after"])
    if before is not None:
        yield beam.pvalue.TaggedOutput("facts", ("records_before", 1))
    if after is not None:
        yield beam.pvalue.TaggedOutput("facts", ("records_after", 1))
        # (new members, old members) of the keeper's group; a record kept alone (reason
        # `unique`) is a group of one, which never has both
        if after.status != ERROR and not (after.status == KEPT and after.reason == "unique"):
            new = before is None
            yield beam.pvalue.TaggedOutput(GROUP_COUNTS, (after.keeper_id, (int(new), int(not new))))
    change = change_of(before, after)
    if change is not None:
        yield beam.pvalue.TaggedOutput("facts", (change, 1))
        yield change_row(rid, change, before, after)


def sum_pairs(counts: Iterable[tuple[int, int]]) -> tuple[int, int]:
    new = old = 0
    for n, o in counts:
        new += n
        old += o
    return new, old


def new_with_old(keeper_counts) -> Iterator[tuple[str, int]]:
    """A group with old members: its new members are duplicates of old images."""
    _, (new, old) = keeper_counts
    if new and old:
        yield "new_in_groups_with_old", new


def record_facts(tables: Iterable[pa.Table]) -> Iterator:
    """`status_rows` tables of both runs, holding every row of the records they name ->
    `classify`'s outputs for each record: its changes row (main output), and, summed
    over these records, the count facts and each keeper's `(new, old)` group counts."""
    statuses: dict[str, dict[str, list[Status]]] = {}
    for table in tables:
        columns = {name: table.column(name).to_pylist()
                   for name in STATUS_COLUMNS + ("status", "side")}
        for k, rid in enumerate(columns["record_id"]):
            sides = statuses.setdefault(rid, {BEFORE: [], AFTER: []})
            sides[columns["side"][k]].append(Status(
                columns["status"][k], columns["reason"][k], columns["keeper_id"][k],
                columns["source_uri"][k], columns["key"][k]))
    facts: dict[str, int] = {}
    groups: dict[str, tuple[int, int]] = {}
    for rid in sorted(statuses):
        for out in classify((rid, statuses[rid])):
            if not isinstance(out, beam.pvalue.TaggedOutput):
                yield out
            elif out.tag == GROUP_COUNTS:
                keeper, counts = out.value
                groups[keeper] = sum_pairs((groups.get(keeper, (0, 0)), counts))
            else:
                name, n = out.value
                facts[name] = facts.get(name, 0) + n
    for item in facts.items():
        yield beam.pvalue.TaggedOutput("facts", item)
    for item in groups.items():
        yield beam.pvalue.TaggedOutput(GROUP_COUNTS, item)


class DiffRecords(beam.PTransform):
    """`(bucket, status_rows table)` of both runs -> `{"changes": rows, "facts": (name, n)}`.

    `changes` rows follow `schemas.CHANGES_SCHEMA`. Facts: `records_before`,
    `records_after`, one per change kind, and `new_in_groups_with_old`: new
    records whose group (same keeper in the later run) has a record of the
    earlier run, i.e. new images that duplicate old ones, whichever is kept.
    One bucket of records is classified at a time (`record_facts`); only the
    group counts of records in groups of two or more meet again, by keeper.
    """

    def expand(self, statuses):
        out = (statuses
               | "ByBucket" >> beam.GroupByKey()
               | "Classify" >> beam.FlatMapTuple(
                   lambda _bucket, tables: record_facts(tables)).with_outputs(
                   "facts", GROUP_COUNTS, main="changes"))
        with_old = (out[GROUP_COUNTS]
                    | "PerGroup" >> beam.CombinePerKey(sum_pairs)
                    | "NewWithOld" >> beam.FlatMap(new_with_old))
        facts = (out.facts, with_old) | "RecordFacts" >> beam.Flatten()
        return {"changes": out.changes, "facts": facts}


PAIR_KINDS = ("duplicate", "near_duplicate")  # a pair in both tables of a run counts as the first


class PairTableError(ValueError):
    """A run's pair table that clipdedup could not have written (a data error)."""


def pair_rows(batch, kind: str, side: str) -> pa.Table:
    """A batch of one run's duplicates or near_duplicates -> `lo`, `hi` (its ids, lo < hi),
    and the pair's kind code (its index in `PAIR_KINDS`) in the `before` or `after` column
    (the other column null)."""
    a, b = (batch.column(name).cast(pa.large_string()) for name in ("record_id_a", "record_id_b"))
    if a.null_count or b.null_count:  # a clipdedup run never writes one (the schema says so)
        n = pc.sum(pc.or_(pc.is_null(a), pc.is_null(b))).as_py()
        raise PairTableError(f"the {side} run's {kind}s table has {n} pair{'s' * (n != 1)} "
                             "without a record id: it was not written by clipdedup")
    swap = pc.greater(a, b)
    n = batch.num_rows
    code = pa.array(np.full(n, PAIR_KINDS.index(kind), np.int8))
    missing = pa.nulls(n, pa.int8())
    return pa.table({"lo": pc.if_else(swap, b, a), "hi": pc.if_else(swap, a, b),
                     BEFORE: code if side == BEFORE else missing,
                     AFTER: code if side == AFTER else missing})


def hash_buckets(rows: pa.Table, columns: tuple[str, ...], buckets: int
                 ) -> Iterator[tuple[int, pa.Table]]:
    """`rows` -> `(bucket, its rows)`; a row's bucket depends on its `columns` (strings)
    only, so the two runs' rows of one pair, or one record, meet in one bucket. Each table
    is a copy, not a slice (a pickled slice carries its whole buffers)."""
    if buckets <= 1:
        yield 0, rows
        return
    h = np.zeros(rows.num_rows, np.uint64)
    for name in columns:
        h = mix(h ^ string_hashes(rows.column(name)))
    bucket = (h % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    sizes = np.bincount(bucket, minlength=buckets)
    ends = np.cumsum(sizes)
    for k in np.flatnonzero(sizes):
        yield int(k), rows.take(pa.array(order[ends[k] - sizes[k]:ends[k]]))


def pair_facts(tables: Iterable[pa.Table]) -> Iterator[tuple[str, int]]:
    """`pair_rows` tables of both runs, holding every row of the pairs they name ->
    `(name, n)` facts: pairs before / after, new, vanished, changed kind
    (duplicate <-> near_duplicate). Columnar: one hash aggregation, no object per pair."""
    tables = list(tables)
    if not tables:
        tables = [pair_rows(pa.table({"record_id_a": [], "record_id_b": []}), PAIR_KINDS[0],
                            BEFORE)]
    rows = pa.concat_tables(tables)
    per_pair = rows.group_by(["lo", "hi"]).aggregate([(BEFORE, "min"), (AFTER, "min")])
    before, after = per_pair.column(f"{BEFORE}_min"), per_pair.column(f"{AFTER}_min")
    had, has = pc.is_valid(before), pc.is_valid(after)

    def count(mask) -> int:
        return int(pc.sum(mask).as_py() or 0)

    yield "pairs_before", count(had)
    yield "pairs_after", count(has)
    yield "pairs_new", count(pc.invert(had))
    yield "pairs_vanished", count(pc.invert(has))
    yield "pairs_changed_kind", count(pc.and_(pc.and_(had, has), pc.not_equal(before, after)))


def _bucketed(batch, kind: str, side: str, buckets: int):
    return hash_buckets(pair_rows(batch, kind, side), ("lo", "hi"), buckets)


class ReadPairs(beam.PTransform):
    """A run's duplicates / near_duplicates tables -> `(bucket, pair_rows table)`.

    Args:
        side: `before` or `after`: which run of the diff this is.
        buckets: how many buckets the pairs are spread over (`hash_buckets`); each
            bucket is compared on one worker, so this bounds a worker's memory.
    """

    def __init__(self, duplicates: str, near_duplicates: str, side: str, buckets: int):
        super().__init__()
        self._tables = tuple(zip(PAIR_KINDS, (duplicates, near_duplicates)))
        self._side, self._buckets = side, max(1, int(buckets))

    def expand(self, pbegin):
        reads = [pbegin
                 | f"Read{kind.title().replace('_', '')}s" >> beam.io.ReadFromParquetBatched(
                     path, columns=["record_id_a", "record_id_b"], validate=False)
                 | f"{kind.title().replace('_', '')}Rows" >> beam.FlatMap(
                     _bucketed, kind, self._side, self._buckets)
                 for kind, path in self._tables]
        return reads | "AllPairs" >> beam.Flatten()


class DiffPairs(beam.PTransform):
    """`(bucket, pair_rows table)` of both runs -> `(name, n)` facts (`pair_facts`), one
    bucket at a time."""

    def expand(self, pairs):
        return (pairs
                | "ByBucket" >> beam.GroupByKey()
                | "PairFacts" >> beam.FlatMapTuple(lambda _bucket, tables: pair_facts(tables)))


def as_counts(totals: list[tuple[str, int]]) -> dict:
    counts = dict.fromkeys(RECORD_FACTS + CHANGES + PAIR_FACTS, 0)
    counts.update(totals)
    return counts


class CountFacts(beam.PTransform):
    """`(name, n)` facts -> one dict of totals, every known name present (0 if none)."""

    def expand(self, facts):
        return (facts
                | "Sum" >> beam.CombinePerKey(sum)
                | "AllTotals" >> beam.combiners.ToList()
                | "AsDict" >> beam.Map(as_counts))
