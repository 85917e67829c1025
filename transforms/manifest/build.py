"""`BuildGroups`: records, pairs and byte copies -> groups / keep / drop rows and stats.

    records (record_id, Record)  pairs (a, b, score)  exact_duplicates rows
        -> ClassifyByteCopies -> edges at or above the group threshold (max score per pair)
        -> ConnectedComponents -> AssignKeepers (per component) -> PlaceRecords
        -> GroupByKeeper -> DenseRank (group_id, component_id) -> ManifestLines
        -> groups / keep / drop rows, one stats dict

With a `previous_keepers` input (`keeper_policy: stable`), the records the
previous run kept are visited first in their components (then the rest, each
by the keeper rule): a previous keeper stays the keeper of every member still
within the threshold of it, and the grouping still never chains.

The same result as `transforms.manifest.reference.build_groups` (the reference,
which holds everything in one process), with every step on the engine: no
worker holds more than one component's edges (spilled to disk above
`max_pairs_in_memory`), one group's members, or one rank bucket.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import numpy as np

from transforms.manifest.components import DEFAULT_MAX_ROUNDS, ConnectedComponents
from transforms.manifest.copies import COPIES, EDGES, ORPHANS, ClassifyByteCopies
from transforms.manifest.keepers import DEFAULT_MAX_PAIRS_IN_MEMORY, SIZES, AssignKeepers
from transforms.manifest.lines import ManifestLines
from transforms.manifest.rank import DenseRank
from transforms.manifest.stats import GroupStats

KEEP, DROP, GROUPS, STATS = "keep", "drop", "groups", "stats"


class Entry(NamedTuple):
    """One manifest record (embedded or a byte copy) with its keeper and component."""

    record_id: str
    source_uri: str | None
    key: str | None
    keeper_id: str
    score: float
    label: str
    is_copy: bool


def _ordered_edge(a: str, b: str, score: float):
    return ((a, b) if a < b else (b, a)), float(score)


def _place(element):
    """Per record id: its Entry and those of its byte copies; facts for the stats."""
    rid, g = element
    for rec in g["record"]:
        label = g["label"][0] if g["label"] else rid
        keeper, score = g["assigned"][0] if g["assigned"] else (rid, 1.0)
        yield Entry(rid, rec.source_uri, rec.key, keeper, score, label, False)
        for copy in g["copies"]:
            yield Entry(copy.record_id, copy.source_uri, copy.key, keeper, score, label, True)


class _Kinds:
    def __init__(self, duplicate_threshold: float):
        self.dup = np.float32(duplicate_threshold)

    def of(self, score: float) -> str:
        # float32, as the pair tables store scores and as build_groups compares them
        return "duplicate" if np.float32(score) >= self.dup else "near_duplicate"


def _members_by_label(element, stable: bool):
    """Per record id: `(label, (record_id, sort_key))`; with `stable`, the sort key
    puts records the previous run kept before all others."""
    rid, g = element
    first = (0 if g.get("previous") else 1,) if stable else ()
    for label in g["label"]:
        for rec in g["record"]:
            yield label, (rid, first + rec.sort_key)


def _group_rows(element, kinds: _Kinds):
    """One keeper's group -> tagged keep / drop / pending-groups rows and stats facts."""
    keeper, entries = element
    size = 0
    keeper_entry = None
    for e in entries:
        size += 1
        if e.record_id == keeper and not e.is_copy:
            keeper_entry = e
    for e in entries:
        base = {"record_id": e.record_id, "source_uri": e.source_uri, "key": e.key,
                "keeper_id": keeper}
        if e is keeper_entry or (e.record_id == keeper and not e.is_copy):
            yield beam.pvalue.TaggedOutput(KEEP, (KEEP, dict(
                base, reason="keeper" if size >= 2 else "unique")))
            kind = "keeper"
        else:
            kind = "exact_copy" if e.is_copy else kinds.of(e.score)
            yield beam.pvalue.TaggedOutput(DROP, (DROP, dict(
                base, reason=kind, keeper_source_uri=keeper_entry.source_uri,
                keeper_key=keeper_entry.key)))
        if size >= 2:
            yield beam.pvalue.TaggedOutput(GROUPS, (keeper, dict(
                base, score_to_keeper=float(e.score), kind=kind, component=e.label)))
    yield "largest_group", size
    if size >= 2:
        yield beam.pvalue.TaggedOutput("group_keepers", (keeper, keeper_entry.label))


def _with_group_id(element):
    _, g = element
    for gid in g["rank"]:
        for row in g["rows"]:
            yield row["component"], dict(row, group_id=gid)


def _with_component_id(element):
    _, g = element
    for cid in g["rank"]:
        for row in g["rows"]:
            row = dict(row, component_id=cid)
            del row["component"]
            yield row


class BuildGroups(beam.PTransform):
    """`{"records", "pairs", "exact_duplicates"}` -> `{"groups", "keep", "drop", "stats"}`.

    Inputs: `records` `(record_id, Record)` (see `transforms.manifest.records`),
    optionally `previous_keepers` (record ids the previous run kept: the
    stable keeper policy),
    `pairs` `(id_a, id_b, score)` (pairs below the group threshold are
    ignored), `exact_duplicates` rows per `schemas.EXACT_DUPLICATES_SCHEMA`.
    Outputs: dict rows of `GROUPS_SCHEMA`; `KEEP_SCHEMA` / `DROP_SCHEMA` rows
    with their keep.txt / drop.txt `line`; one stats dict (the keys of
    `build_groups`' stats, the largest component, and `problems`: conservation
    failures, empty when the manifest adds up). `components_on_one_worker`:
    see `transforms.manifest.components`.
    """

    def __init__(self, *, duplicate_threshold: float = 0.999,
                 near_duplicate_threshold: float = 0.90, drop_near_duplicates: bool = True,
                 keeper_rule: str = "-area,-file_size,record_id",
                 max_rounds: int = DEFAULT_MAX_ROUNDS,
                 max_pairs_in_memory: int = DEFAULT_MAX_PAIRS_IN_MEMORY,
                 rank_buckets: int = 1000, components_on_one_worker: bool = False):
        super().__init__()
        self._dup = duplicate_threshold
        self._threshold = near_duplicate_threshold if drop_near_duplicates else duplicate_threshold
        self._rule = keeper_rule
        self._rounds = max_rounds
        self._cap = max_pairs_in_memory
        self._buckets = rank_buckets
        self._one_worker = components_on_one_worker

    def expand(self, inputs: dict):
        records = inputs["records"]
        ids = records | "Ids" >> beam.Keys()
        byte = {"rows": inputs["exact_duplicates"], "ids": ids} | "ByteCopies" >> (
            ClassifyByteCopies())
        threshold = np.float32(self._threshold)
        mined = (inputs["pairs"]
                 | "AtGroupThreshold" >> beam.Filter(
                     lambda p: np.float32(p[2]) >= threshold and p[0] != p[1]))
        edges = ((mined, byte[EDGES])
                 | "AllEdges" >> beam.Flatten()
                 | "Ordered" >> beam.MapTuple(_ordered_edge)
                 # a byte-copy edge may repeat a mined pair: its score is the larger, not the sum
                 | "MaxScorePerPair" >> beam.CombinePerKey(max)
                 | "AsEdge" >> beam.MapTuple(lambda ab, s: (ab[0], ab[1], s)))
        labels = (edges
                  | "EdgeEnds" >> beam.Map(lambda e: (e[0], e[1]))
                  | "Components" >> ConnectedComponents(self._rounds,
                                                          one_worker=self._one_worker))
        to_label = {"label": labels, "record": records}
        stable = "previous_keepers" in inputs
        if stable:
            to_label["previous"] = inputs["previous_keepers"] | "PreviousKept" >> beam.Map(
                lambda rid: (rid, True))
        members = (to_label
                   | "LabelMembers" >> beam.CoGroupByKey()
                   | "MembersByLabel" >> beam.FlatMap(_members_by_label, stable))
        edges_by_label = ({"edge": edges | "ByEndA" >> beam.Map(lambda e: (e[0], e)),
                           "label": labels}
                          | "LabelEdges" >> beam.CoGroupByKey()
                          | "EdgesByLabel" >> beam.FlatMap(
                              lambda kv: [(label, e) for label in kv[1]["label"]
                                          for e in kv[1]["edge"]]))
        keepers = ({"members": members, "edges": edges_by_label}
                   | "Keepers" >> AssignKeepers(self._cap))
        assigned = keepers.assigned | "ById" >> beam.Map(lambda m: (m[0], (m[1], m[2])))
        entries = ({"record": records, "label": labels, "assigned": assigned,
                    "copies": byte[COPIES]}
                   | "JoinPerRecord" >> beam.CoGroupByKey()
                   | "Place" >> beam.FlatMap(_place))
        grouped = (entries
                   | "ByKeeper" >> beam.Map(lambda e: (e.keeper_id, e))
                   | "GroupByKeeper" >> beam.GroupByKey()
                   | "Rows" >> beam.FlatMap(_group_rows, _Kinds(self._dup)).with_outputs(
                       KEEP, DROP, GROUPS, "group_keepers", main="facts"))
        group_ids = (grouped.group_keepers | "GroupKeepers" >> beam.Keys()
                     | "GroupId" >> DenseRank(self._buckets))
        component_ids = (entries
                         | "Labels" >> beam.Filter(lambda e: not e.is_copy)
                         | "LabelOf" >> beam.Map(lambda e: e.label)
                         | "ComponentId" >> DenseRank(self._buckets))
        groups = ({"rows": grouped[GROUPS], "rank": group_ids}
                  | "JoinGroupId" >> beam.CoGroupByKey()
                  | "WithGroupId" >> beam.FlatMap(_with_group_id))
        groups = ({"rows": groups, "rank": component_ids}
                  | "JoinComponentId" >> beam.CoGroupByKey()
                  | "WithComponentId" >> beam.FlatMap(_with_component_id))
        lined = ((grouped[KEEP], grouped[DROP])
                 | "KeepAndDrop" >> beam.Flatten()
                 | "Lines" >> ManifestLines())
        keep = lined | "KeepRows" >> beam.Filter(lambda t: t[0] == KEEP) | "Keep" >> beam.Values()
        drop = lined | "DropRows" >> beam.Filter(lambda t: t[0] == DROP) | "Drop" >> beam.Values()
        stats = {"records": records, "copies": byte[COPIES], "orphans": byte[ORPHANS],
                 "sizes": keepers[SIZES], "edges": edges, "mined_edges": mined,
                 "facts": grouped.facts,
                 "group_keepers": grouped.group_keepers,
                 "keep": keep, "drop": drop} | "Stats" >> GroupStats(
                     self._threshold, self._rule)
        return {GROUPS: groups, KEEP: keep, DROP: drop, STATS: stats}
