"""Groups, keepers and the training manifest in one process: the reference.

`build_groups` computes in memory what `BuildGroups` (`build.py`) computes on
the engine; tests hold the engine path to it, row for row. It is the
specification of the manifest's meaning:

1. `build_groups`: the duplicate graph (exact copies, duplicates and, by
   default, near-duplicates), its connected components (scipy), and groups
   that cannot chain: records are visited best keeper first; an unassigned
   record becomes a keeper and takes its unassigned neighbours, so every member
   is joined to its keeper by an edge at or above the threshold. A component
   A~B~C where A and C are dissimilar splits into groups instead of dropping C
   for A.
2. The manifest: `keep` (unique records and keepers), `drop` (everything else,
   with reason `exact_copy` / `duplicate` / `near_duplicate` and the keeper
   kept instead), each row with its `source_uri` and `key`, and the lines of
   `keep.txt` / `drop.txt` (`manifest_text`). Every embedded record and every
   byte copy lands in exactly one of keep/drop; this is checked.

The keeper rule is in `keeper_rule.py`. The keeper policy decides the visiting
order of step 1: `pure` (default) by the keeper rule alone, the same result
as a full run; `stable` (`previous_keepers` given) visits the records the
previous run kept first, then the rest by the rule, so last night's keeper
stays the keeper of every member still within the threshold of it (a slightly
larger copy arriving tonight joins its group instead of replacing it), and
groups still never chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from transforms.manifest.keeper_rule import DEFAULT_KEEPER_RULE, keeper_rank
from transforms.manifest.manifest_text import manifest_lines
from transforms.mine.pairs import Pairs, canonical_pairs
from transforms.schemas import DROP_SCHEMA, GROUPS_SCHEMA, KEEP_SCHEMA


@dataclass
class GroupResult:
    """Tables the mine stage writes, plus counts for summary.json."""

    groups: pa.Table
    keep: pa.Table
    drop: pa.Table
    keep_lines: list[str]
    drop_lines: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


def build_groups(
    records: pa.Table,
    pairs: Pairs,
    exact_duplicates: pa.Table | None = None,
    *,
    duplicate_threshold: float = 0.999,
    near_duplicate_threshold: float = 0.90,
    drop_near_duplicates: bool = True,
    keeper_rule: str = DEFAULT_KEEPER_RULE,
    previous_keepers: set[str] | frozenset[str] | None = None,
) -> GroupResult:
    """Groups, keepers and the keep/drop manifest.

    Args:
        records: the embedded records, one row each (the embeddings table
            without its vectors will do): `record_id`, the columns the keeper
            rule uses, and `source_uri` / `key` where known (else the
            manifest's are null). Pair indices refer to its rows.
        pairs: mined pairs (indices into `records`); pairs below the grouping
            threshold are ignored.
        exact_duplicates: the spine's byte-copy table (`record_id_a`,
            `record_id_b`, `sha256`, and `source_uri_*`, `key_*` of both ends
            where known): one end embedded (the representative), the other a
            copy that was not embedded. Rows where neither end is
            embedded (copies of a record that failed to decode; the errors
            table has that record) are in neither keep nor drop, and counted
            as `copies_of_unembedded_records`.
        duplicate_threshold: score from which a member is a `duplicate`.
        near_duplicate_threshold: score from which a member is a `near_duplicate`.
        drop_near_duplicates: group (and drop) near-duplicates too; if False
            only exact copies and duplicates are grouped.
        keeper_rule: see the module docstring.
        previous_keepers: the record ids the previous run kept (its keep
            table), for the stable keeper policy; None: the pure policy.

    Returns:
        A `GroupResult`. Raises ValueError if the manifest does not add up.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.asarray(records.column("record_id").to_pylist(), dtype=object)
    n = ids.size
    if len(set(ids.tolist())) != n:
        raise ValueError("records: record_id is not unique")
    rank = keeper_rank(ids, *(_ints(records, c) for c in ("width", "height", "file_size")),
                       rule=keeper_rule)
    uris, keys = _strings(records, "source_uri"), _strings(records, "key")
    edge_threshold = near_duplicate_threshold if drop_near_duplicates else duplicate_threshold

    # Byte copies: attach each copy to its embedded representative.
    index_of = {rid: k for k, rid in enumerate(ids.tolist())}
    copy_ids: list[str] = []
    copy_uris: list[str | None] = []
    copy_keys: list[str | None] = []
    copy_of: list[int] = []
    extra_i: list[int] = []
    extra_j: list[int] = []
    orphan_copies = 0
    if exact_duplicates is not None and exact_duplicates.num_rows:
        ends = [[exact_duplicates.column(f"record_id_{e}").to_pylist(),
                 _strings(exact_duplicates, f"source_uri_{e}"), _strings(exact_duplicates, f"key_{e}")]
                for e in "ab"]
        for row, (a, b) in enumerate(zip(ends[0][0], ends[1][0])):
            ia, ib = index_of.get(a), index_of.get(b)
            if ia is not None and ib is not None:  # both embedded: an edge of score 1
                extra_i.append(ia)
                extra_j.append(ib)
            elif ia is not None or ib is not None:
                copy_end = ends[1] if ia is not None else ends[0]
                copy_ids.append(copy_end[0][row])
                copy_uris.append(copy_end[1][row])
                copy_keys.append(copy_end[2][row])
                copy_of.append(ia if ia is not None else ib)
            else:
                # A copy of a record that failed to decode: neither is embedded; the
                # pair stays accounted for by the errors table and exact_duplicates.
                orphan_copies += 1
        if len(set(copy_ids)) != len(copy_ids):
            raise ValueError("exact_duplicates: a byte copy appears twice")

    keep_edge = pairs.score >= edge_threshold
    ei = np.concatenate([pairs.i[keep_edge], np.asarray(extra_i, np.int64)])
    ej = np.concatenate([pairs.j[keep_edge], np.asarray(extra_j, np.int64)])
    ew = np.concatenate([pairs.score[keep_edge], np.ones(len(extra_i), np.float32)])
    # A byte-copy edge (score 1) may repeat a mined pair: keep the larger score, not the sum.
    lo, hi = np.minimum(ei, ej), np.maximum(ei, ej)
    order = np.lexsort((-ew, hi, lo))
    lo, hi, ew = lo[order], hi[order], ew[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])] if lo.size else lo.astype(bool)
    ei, ej, ew = lo[first], hi[first], ew[first]
    # Both directions, so each row lists all neighbours; score stored as-is.
    graph = coo_matrix((np.r_[ew, ew], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)

    # Greedy non-chaining grouping, best keeper first.
    keeper = np.full(n, -1, dtype=np.int64)
    score_to_keeper = np.ones(n, dtype=np.float32)
    indptr, indices, data = graph.indptr, graph.indices, graph.data
    has_edge = np.flatnonzero(np.diff(indptr) > 0)
    visit = rank[has_edge]
    if previous_keepers is not None:  # stable: previous keepers first, each part by the rule
        before = np.fromiter((rid in previous_keepers for rid in ids[has_edge].tolist()), bool,
                             has_edge.size)
        visit = np.where(before, visit, visit + n)
    for u in has_edge[np.argsort(visit, kind="stable")]:
        if keeper[u] >= 0:
            continue
        keeper[u] = u
        nbrs = indices[indptr[u] : indptr[u + 1]]
        free = keeper[nbrs] < 0
        keeper[nbrs[free]] = u
        score_to_keeper[nbrs[free]] = data[indptr[u] : indptr[u + 1]][free]
    lone = keeper < 0
    keeper[lone] = np.flatnonzero(lone)

    copy_of_arr = np.asarray(copy_of, dtype=np.int64)
    copy_keeper = keeper[copy_of_arr]
    copy_score = score_to_keeper[copy_of_arr]

    def kind_of(score: np.ndarray) -> np.ndarray:
        return np.where(score >= duplicate_threshold, "duplicate", "near_duplicate")

    is_keeper = keeper == np.arange(n)
    group_size = np.bincount(keeper, minlength=n) + np.bincount(copy_keeper, minlength=n)
    in_group_keeper = is_keeper & (group_size >= 2)

    # Deterministic ids: order groups by keeper record_id, components by smallest member id.
    id_order = np.argsort(ids.astype(str), kind="stable")
    group_keepers = id_order[in_group_keeper[id_order]]
    group_id_of = np.full(n, -1, dtype=np.int64)
    group_id_of[group_keepers] = np.arange(group_keepers.size)
    _, first = np.unique(labels[id_order], return_index=True)
    comp_rank = np.empty(labels.max() + 1 if n else 0, dtype=np.int64)
    comp_rank[labels[id_order][np.sort(first)]] = np.arange(first.size)
    component_id = comp_rank[labels] if n else labels

    # groups table: embedded members of multi-record groups, then copies.
    members = np.flatnonzero(group_size[keeper] >= 2)
    m_kind = np.where(is_keeper[members], "keeper", kind_of(score_to_keeper[members]))
    g_rid = ids[members].tolist() + copy_ids
    g_uri = [uris[k] for k in members] + copy_uris
    g_key = [keys[k] for k in members] + copy_keys
    g_gid = np.r_[group_id_of[keeper[members]], group_id_of[copy_keeper]]
    g_keeper = ids[keeper[members]].tolist() + ids[copy_keeper].tolist()
    g_score = np.r_[score_to_keeper[members], copy_score].astype(np.float32)
    g_kind = m_kind.tolist() + ["exact_copy"] * len(copy_ids)
    g_comp = np.r_[component_id[members], component_id[copy_of_arr]]
    order = np.lexsort((np.asarray(g_rid, dtype=str), g_gid)) if g_rid else np.empty(0, np.int64)
    groups = pa.table({
        "record_id": pa.array([g_rid[k] for k in order], pa.string()),
        "source_uri": pa.array([g_uri[k] for k in order], pa.string()),
        "key": pa.array([g_key[k] for k in order], pa.string()),
        "group_id": pa.array(g_gid[order], pa.int64()),
        "keeper_id": pa.array([g_keeper[k] for k in order], pa.string()),
        "score_to_keeper": pa.array(g_score[order], pa.float32()),
        "kind": pa.array([g_kind[k] for k in order], pa.string()),
        "component_id": pa.array(g_comp[order], pa.int64()),
    }, schema=GROUPS_SCHEMA)

    kept = id_order[is_keeper[id_order]]
    keep = pa.table({
        "record_id": pa.array(ids[kept].tolist(), pa.string()),
        "source_uri": pa.array([uris[k] for k in kept], pa.string()),
        "key": pa.array([keys[k] for k in kept], pa.string()),
        "reason": pa.array(np.where(group_size[kept] >= 2, "keeper", "unique").tolist(), pa.string()),
        "keeper_id": pa.array(ids[kept].tolist(), pa.string()),
    }, schema=KEEP_SCHEMA)

    dropped = id_order[~is_keeper[id_order]]
    d_rid = ids[dropped].tolist() + copy_ids
    d_uri = [uris[k] for k in dropped] + copy_uris
    d_key = [keys[k] for k in dropped] + copy_keys
    d_keeper_at = np.r_[keeper[dropped], copy_keeper].astype(np.int64)
    d_reason = kind_of(score_to_keeper[dropped]).tolist() + ["exact_copy"] * len(copy_ids)
    d_keeper = ids[keeper[dropped]].tolist() + ids[copy_keeper].tolist()
    d_order = np.argsort(np.asarray(d_rid, dtype=str), kind="stable") if d_rid else []
    drop = pa.table({
        "record_id": pa.array([d_rid[k] for k in d_order], pa.string()),
        "source_uri": pa.array([d_uri[k] for k in d_order], pa.string()),
        "key": pa.array([d_key[k] for k in d_order], pa.string()),
        "reason": pa.array([d_reason[k] for k in d_order], pa.string()),
        "keeper_id": pa.array([d_keeper[k] for k in d_order], pa.string()),
        "keeper_source_uri": pa.array([uris[d_keeper_at[k]] for k in d_order], pa.string()),
        "keeper_key": pa.array([keys[d_keeper_at[k]] for k in d_order], pa.string()),
    }, schema=DROP_SCHEMA)

    # Conservation: every embedded record and every copy exactly once.
    all_ids = keep.column("record_id").to_pylist() + drop.column("record_id").to_pylist()
    if len(all_ids) != n + len(copy_ids) or len(set(all_ids)) != len(all_ids):
        raise ValueError(f"manifest does not add up: keep {keep.num_rows} + drop {drop.num_rows}"
                         f" != records {n} + copies {len(copy_ids)}")

    # Lines are made unique over keep and drop together: one line, one record of the run.
    lines = manifest_lines(all_ids, keep.column("source_uri").to_pylist()
                           + drop.column("source_uri").to_pylist(),
                           keep.column("key").to_pylist() + drop.column("key").to_pylist())
    reasons = drop.column("reason").to_pylist()
    n_components = int(np.unique(component_id[members]).size) if members.size else 0
    stats = {
        "records": int(n), "exact_copies": len(copy_ids),
        "rows_without_source_uri": (keep.column("source_uri").null_count
                                    + drop.column("source_uri").null_count),
        "copies_of_unembedded_records": orphan_copies,
        "kept": keep.num_rows, "dropped": drop.num_rows,
        "dropped_exact_copy": reasons.count("exact_copy"),
        "dropped_duplicate": reasons.count("duplicate"),
        "dropped_near_duplicate": reasons.count("near_duplicate"),
        "groups": int(group_keepers.size), "components": n_components,
        # components the no-chaining rule cut into more than one group
        "components_split": int((np.bincount(component_id[group_keepers]) > 1).sum())
        if group_keepers.size else 0,
        "largest_group": int(group_size.max()) if n else 0,
        "group_threshold": float(edge_threshold), "keeper_rule": keeper_rule,
    }
    return GroupResult(groups, keep, drop, lines[:keep.num_rows], lines[keep.num_rows:], stats)


def _ints(table: pa.Table, name: str) -> np.ndarray | None:
    """An integer column as int64 (nulls as 0), or None when the table lacks it."""
    if name not in table.column_names:
        return None
    import pyarrow.compute as pc

    try:
        column = pc.cast(table.column(name), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name} is not an integer column: {exc}") from None
    return column.fill_null(0).to_numpy()


def _strings(table: pa.Table, name: str) -> list[str | None]:
    """A column as Python strings, or all None when the table lacks it."""
    if name not in table.column_names:
        return [None] * table.num_rows
    return table.column(name).cast(pa.string()).to_pylist()


def pairs_from_table(table: pa.Table, records: pa.Table) -> Pairs:
    """Index pairs (into `records`) from a `{record_id_a, record_id_b, score}` table."""
    index = {rid: k for k, rid in enumerate(records.column("record_id").to_pylist())}
    i = np.array([index[r] for r in table.column("record_id_a").to_pylist()], dtype=np.int64)
    j = np.array([index[r] for r in table.column("record_id_b").to_pylist()], dtype=np.int64)
    s = table.column("score").to_numpy().astype(np.float32)
    return canonical_pairs(i, j, s, max(records.num_rows, 1))
