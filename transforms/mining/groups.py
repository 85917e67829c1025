"""Groups, keepers and the training manifest, from mined pairs.

Pure functions over arrays and Arrow tables, called by the mine stage:

1. `pair_tables`: index pairs -> `duplicates` / `near_duplicates` tables
   (`record_id_a < record_id_b`, sorted), per `PAIRS_SCHEMA`.
2. `build_groups`: the duplicate graph (exact copies, duplicates and, by
   default, near-duplicates), its connected components (scipy), and groups
   that cannot chain: records are visited best keeper first; an unassigned
   record becomes a keeper and takes its unassigned neighbours, so every member
   is joined to its keeper by an edge at or above the threshold. A component
   A~B~C where A and C are dissimilar splits into groups instead of dropping C
   for A.
3. The manifest: `keep` (unique records and keepers), `drop` (everything else,
   with reason `exact_copy` / `duplicate` / `near_duplicate` and the keeper
   kept instead), and the kept `key`s for `keep.txt`. Every embedded record and
   every byte copy lands in exactly one of keep/drop; this is checked.

The keeper rule is a comma-separated list of fields, `-` for descending:
default `-area,-file_size,record_id` (larger pixel area, then larger file,
then smaller record_id). `record_id` is always the last tie-break, so the same
input gives the same keeper every night, whatever order rows arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from transforms.mining.pairs import Pairs
from transforms.schemas import DROP_SCHEMA, GROUPS_SCHEMA, KEEP_SCHEMA, PAIRS_SCHEMA

DEFAULT_KEEPER_RULE = "-area,-file_size,record_id"
KEEPER_FIELDS = ("area", "width", "height", "file_size", "record_id")


@dataclass
class GroupResult:
    """Tables the mine stage writes, plus counts for summary.json."""

    groups: pa.Table
    keep: pa.Table
    drop: pa.Table
    keep_keys: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


def parse_keeper_rule(rule: str) -> list[tuple[str, bool]]:
    """`"-area,file_size"` -> `[("area", True), ("file_size", False)]` (name, descending)."""
    terms = []
    for raw in (rule or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        desc = raw.startswith("-")
        name = raw.lstrip("+-")
        if name not in KEEPER_FIELDS:
            raise ValueError(f"keeper_rule: unknown field {name!r}; use {KEEPER_FIELDS}")
        terms.append((name, desc))
    if not any(name == "record_id" for name, _ in terms):
        terms.append(("record_id", False))
    return terms


def keeper_rank(
    record_ids: np.ndarray, width: np.ndarray, height: np.ndarray, file_size: np.ndarray,
    rule: str = DEFAULT_KEEPER_RULE,
) -> np.ndarray:
    """Rank of each record under the rule (0 = best keeper); a permutation of 0..N-1."""
    n = len(record_ids)
    _, id_rank = np.unique(np.asarray(record_ids, dtype=object).astype(str), return_inverse=True)
    values = {
        "area": np.asarray(width, np.int64) * np.asarray(height, np.int64),
        "width": np.asarray(width, np.int64),
        "height": np.asarray(height, np.int64),
        "file_size": np.asarray(file_size, np.int64),
        "record_id": id_rank.astype(np.int64),
    }
    keys = [(-values[name] if desc else values[name]) for name, desc in parse_keeper_rule(rule)]
    order = np.lexsort(keys[::-1])  # lexsort: last key is the primary one
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def pair_tables(
    pairs: Pairs, record_ids: np.ndarray, duplicate_threshold: float,
    near_duplicate_threshold: float,
) -> tuple[pa.Table, pa.Table]:
    """`(duplicates, near_duplicates)` tables with `record_id_a < record_id_b`, sorted."""
    ids = np.asarray(record_ids, dtype=object).astype(str)
    a, b = ids[pairs.i], ids[pairs.j]
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    score = pairs.score.astype(np.float32)
    order = np.lexsort((b, a))
    a, b, score = a[order], b[order], score[order]
    dup = score >= duplicate_threshold
    near = (score >= near_duplicate_threshold) & ~dup

    def table(mask: np.ndarray) -> pa.Table:
        return pa.table({"record_id_a": pa.array(a[mask].tolist(), pa.string()),
                         "record_id_b": pa.array(b[mask].tolist(), pa.string()),
                         "score": pa.array(score[mask], pa.float32())}, schema=PAIRS_SCHEMA)

    return table(dup), table(near)


def build_groups(
    records: pa.Table,
    pairs: Pairs,
    exact_duplicates: pa.Table | None = None,
    *,
    duplicate_threshold: float = 0.999,
    near_duplicate_threshold: float = 0.90,
    drop_near_duplicates: bool = True,
    keeper_rule: str = DEFAULT_KEEPER_RULE,
) -> GroupResult:
    """Groups, keepers and the keep/drop manifest.

    Args:
        records: the embedded records, one row each, with at least
            `record_id, key, width, height, file_size` (the embeddings table
            without its vectors will do). Pair indices refer to its rows.
        pairs: mined pairs (indices into `records`); pairs below the grouping
            threshold are ignored.
        exact_duplicates: the spine's byte-copy table (`record_id_a`,
            `record_id_b`, `sha256`): one end embedded (the representative),
            the other a copy that was not embedded. Rows where neither end is
            embedded (copies of a record that failed to decode; the errors
            table has that record) are in neither keep nor drop, and counted
            as `copies_of_unembedded_records`.
        duplicate_threshold: score from which a member is a `duplicate`.
        near_duplicate_threshold: score from which a member is a `near_duplicate`.
        drop_near_duplicates: group (and drop) near-duplicates too; if False
            only exact copies and duplicates are grouped.
        keeper_rule: see the module docstring.

    Returns:
        A `GroupResult`. Raises ValueError if the manifest does not add up.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.asarray(records.column("record_id").to_pylist(), dtype=object)
    n = ids.size
    if len(set(ids.tolist())) != n:
        raise ValueError("records: record_id is not unique")
    rank = keeper_rank(ids, records.column("width").to_numpy(), records.column("height").to_numpy(),
                       records.column("file_size").to_numpy(), keeper_rule)
    edge_threshold = near_duplicate_threshold if drop_near_duplicates else duplicate_threshold

    # Byte copies: attach each copy to its embedded representative.
    index_of = {rid: k for k, rid in enumerate(ids.tolist())}
    copy_ids: list[str] = []
    copy_of: list[int] = []
    extra_i: list[int] = []
    extra_j: list[int] = []
    orphan_copies = 0
    if exact_duplicates is not None and exact_duplicates.num_rows:
        for a, b in zip(exact_duplicates.column("record_id_a").to_pylist(),
                        exact_duplicates.column("record_id_b").to_pylist()):
            ia, ib = index_of.get(a), index_of.get(b)
            if ia is not None and ib is not None:  # both embedded: an edge of score 1
                extra_i.append(ia)
                extra_j.append(ib)
            elif ia is not None or ib is not None:
                copy_ids.append(b if ia is not None else a)
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
    # Both directions, so each row lists all neighbours; score stored as-is.
    graph = coo_matrix((np.r_[ew, ew], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n)).tocsr()
    graph.sum_duplicates()
    _, labels = connected_components(graph, directed=False)

    # Greedy non-chaining grouping, best keeper first.
    keeper = np.full(n, -1, dtype=np.int64)
    score_to_keeper = np.ones(n, dtype=np.float32)
    indptr, indices, data = graph.indptr, graph.indices, graph.data
    has_edge = np.flatnonzero(np.diff(indptr) > 0)
    for u in has_edge[np.argsort(rank[has_edge], kind="stable")]:
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
    g_gid = np.r_[group_id_of[keeper[members]], group_id_of[copy_keeper]]
    g_keeper = ids[keeper[members]].tolist() + ids[copy_keeper].tolist()
    g_score = np.r_[score_to_keeper[members], copy_score].astype(np.float32)
    g_kind = m_kind.tolist() + ["exact_copy"] * len(copy_ids)
    g_comp = np.r_[component_id[members], component_id[copy_of_arr]]
    order = np.lexsort((np.asarray(g_rid, dtype=str), g_gid)) if g_rid else np.empty(0, np.int64)
    groups = pa.table({
        "record_id": pa.array([g_rid[k] for k in order], pa.string()),
        "group_id": pa.array(g_gid[order], pa.int64()),
        "keeper_id": pa.array([g_keeper[k] for k in order], pa.string()),
        "score_to_keeper": pa.array(g_score[order], pa.float32()),
        "kind": pa.array([g_kind[k] for k in order], pa.string()),
        "component_id": pa.array(g_comp[order], pa.int64()),
    }, schema=GROUPS_SCHEMA)

    kept = id_order[is_keeper[id_order]]
    keep = pa.table({
        "record_id": pa.array(ids[kept].tolist(), pa.string()),
        "reason": pa.array(np.where(group_size[kept] >= 2, "keeper", "unique").tolist(), pa.string()),
        "keeper_id": pa.array(ids[kept].tolist(), pa.string()),
    }, schema=KEEP_SCHEMA)

    dropped = id_order[~is_keeper[id_order]]
    d_rid = ids[dropped].tolist() + copy_ids
    d_reason = kind_of(score_to_keeper[dropped]).tolist() + ["exact_copy"] * len(copy_ids)
    d_keeper = ids[keeper[dropped]].tolist() + ids[copy_keeper].tolist()
    d_order = np.argsort(np.asarray(d_rid, dtype=str), kind="stable") if d_rid else []
    drop = pa.table({
        "record_id": pa.array([d_rid[k] for k in d_order], pa.string()),
        "reason": pa.array([d_reason[k] for k in d_order], pa.string()),
        "keeper_id": pa.array([d_keeper[k] for k in d_order], pa.string()),
    }, schema=DROP_SCHEMA)

    # Conservation: every embedded record and every copy exactly once.
    all_ids = keep.column("record_id").to_pylist() + drop.column("record_id").to_pylist()
    if len(all_ids) != n + len(copy_ids) or len(set(all_ids)) != len(all_ids):
        raise ValueError(f"manifest does not add up: keep {keep.num_rows} + drop {drop.num_rows}"
                         f" != records {n} + copies {len(copy_ids)}")

    key_col = records.column("key").to_pylist()
    keep_keys = [key_col[k] for k in kept]
    reasons = drop.column("reason").to_pylist()
    n_components = int(np.unique(component_id[members]).size) if members.size else 0
    stats = {
        "records": int(n), "exact_copies": len(copy_ids),
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
    return GroupResult(groups, keep, drop, keep_keys, stats)
