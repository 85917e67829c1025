"""Checks a run must pass before it is published.

Conservation: every record read is in exactly one of the embeddings table,
the exact-copies list (a byte copy of an embedded or failed record) or the
errors table, and no record_id appears twice. Error budget: the share of
records that failed stays within `max_error_fraction`.
"""

from __future__ import annotations

import collections

import pyarrow as pa
import pyarrow.compute as pc


class RunCheckError(RuntimeError):
    """A run's numbers do not add up, or too many records failed."""


def count_by(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    counts = pc.value_counts(table.column(column)).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: str(c["values"]))}


def check_conservation(shards: pa.Table, embedded_ids: pa.Array, copy_ids: pa.Array,
                       errors: pa.Table) -> dict[str, int]:
    """Raises RunCheckError unless records_read == embedded + copies + errors, ids unique.

    Returns the counts that were compared.
    """
    record_errors = errors.filter(pc.is_valid(errors.column("record_id")))
    counts = {
        "records_read": int(pc.sum(shards.column("records_read")).as_py() or 0),
        "embedded": len(embedded_ids),
        "exact_copies_not_embedded": len(copy_ids),
        "record_errors": record_errors.num_rows,
        "shard_errors": errors.num_rows - record_errors.num_rows,
    }
    all_ids = pa.chunked_array([embedded_ids, copy_ids, record_errors.column("record_id")],
                               type=pa.string())
    distinct = pc.count_distinct(all_ids).as_py() if len(all_ids) else 0
    accounted = counts["embedded"] + counts["exact_copies_not_embedded"] + counts["record_errors"]
    problems = []
    if accounted != counts["records_read"]:
        problems.append(f"records_read={counts['records_read']} but embedded + copies + errors"
                        f" = {accounted}")
    if distinct != len(all_ids):
        problems.append(f"{len(all_ids) - distinct} record_id(s) appear more than once")
    if problems:
        raise RunCheckError("conservation check failed: " + "; ".join(problems))
    return counts


def check_error_budget(errors: pa.Table, records_read: int, record_errors: int,
                       max_error_fraction: float) -> None:
    """Raises RunCheckError naming the worst files if too many records failed."""
    if records_read == 0:
        raise RunCheckError("no records were read: check --input")
    fraction = record_errors / records_read
    if fraction <= max_error_fraction:
        return
    per_file = collections.Counter(errors.column("source_uri").to_pylist())
    worst = sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    raise RunCheckError(
        f"{record_errors} of {records_read} records failed ({fraction:.1%} > "
        f"max_error_fraction {max_error_fraction:.1%}); worst files (errors): "
        + ", ".join(f"{uri} ({n})" for uri, n in worst)
        + ". See errors.parquet in the staging folder.")
