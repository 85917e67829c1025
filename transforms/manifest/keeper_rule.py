"""The keeper rule: which member of a group is kept.

The keeper rule is a comma-separated list of fields, `-` for descending:
default `-area,-file_size,record_id` (larger pixel area, then larger file,
then smaller record_id). `record_id` is always the last tie-break, so the same
input gives the same keeper every night, whatever order rows arrive in. A
table made elsewhere may lack the size columns: `resolve_keeper_rule` leaves
them out of the default rule, and a rule that was asked for is an error
naming the missing column.
"""

from __future__ import annotations

import numpy as np

DEFAULT_KEEPER_RULE = "-area,-file_size,record_id"
KEEPER_FIELDS = ("area", "width", "height", "file_size", "record_id")
# The table columns each keeper field is computed from.
_FIELD_COLUMNS = {"area": ("width", "height"), "width": ("width",), "height": ("height",),
                  "file_size": ("file_size",), "record_id": ()}


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


def resolve_keeper_rule(rule: str, columns: set[str] | list[str],
                        table: str = "the embeddings table") -> tuple[str, list[str]]:
    """The keeper rule to apply to a table with `columns`, and the fields left out.

    The default rule leaves out the fields whose columns the table lacks (an
    embeddings table made by another tool may have only ids and vectors); any
    other rule needing a missing column raises ValueError naming it.
    """
    terms = parse_keeper_rule(rule)
    missing = {name: [c for c in _FIELD_COLUMNS[name] if c not in set(columns)]
               for name, _ in terms}
    missing = {name: cols for name, cols in missing.items() if cols}
    if not missing:
        return rule, []
    if rule != DEFAULT_KEEPER_RULE:
        name, cols = next(iter(missing.items()))
        raise ValueError(f"keeper_rule {rule!r} needs column {cols[0]} ({name}), which "
                         f"{table} does not have; use fields of columns it has "
                         f"(e.g. keeper_rule: record_id)")
    kept = [("-" if desc else "") + name for name, desc in terms if name not in missing]
    return ",".join(kept), sorted(missing)


def keeper_rank(
    record_ids: np.ndarray, width: np.ndarray | None = None, height: np.ndarray | None = None,
    file_size: np.ndarray | None = None, rule: str = DEFAULT_KEEPER_RULE,
) -> np.ndarray:
    """Rank of each record under the rule (0 = best keeper); a permutation of 0..N-1.

    Columns the rule does not use may be None; one it uses must not be.
    """
    n = len(record_ids)
    _, id_rank = np.unique(np.asarray(record_ids, dtype=object).astype(str), return_inverse=True)
    given = {"width": width, "height": height, "file_size": file_size}
    terms = parse_keeper_rule(rule)
    for name, _ in terms:
        for col in _FIELD_COLUMNS[name]:
            if given[col] is None:
                raise ValueError(f"keeper_rule {rule!r} needs column {col}, which the "
                                 "records do not have")
    col = {k: np.asarray(v, np.int64) for k, v in given.items() if v is not None}
    values = {"record_id": id_rank.astype(np.int64)}
    for name, _ in terms:
        if name == "area":
            values[name] = col["width"] * col["height"]
        elif name != "record_id":
            values[name] = col[name]
    keys = [(-values[name] if desc else values[name]) for name, desc in terms]
    order = np.lexsort(keys[::-1])  # lexsort: last key is the primary one
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank
