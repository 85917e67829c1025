"""Checks a run must pass before it is published.

Conservation: every record read is in exactly one of the embeddings table,
the exact-copies list (a byte copy of an embedded or failed record) or the
errors table, and no record_id appears twice. Error budget: the share of
records that failed, and the share of input files that failed as a whole
(unreadable, wrong schema, cut short: their records cannot even be counted),
each stay within `max_error_fraction`. Inputs unchanged: no file read
different bytes in the data pass than in the index pass.
"""

from __future__ import annotations

import collections

import pyarrow as pa
import pyarrow.compute as pc

from transforms.records import CHANGED_DURING_RUN

SHOWN_FILES = 5


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


def failed_files(errors: pa.Table) -> list[dict[str, str]]:
    """The whole-file error rows (`record_id` null), one per file, sorted by uri."""
    rows = errors.filter(pc.is_null(errors.column("record_id"))).select(
        ["source_uri", "reason", "message"]).to_pylist()
    first: dict[str, dict[str, str]] = {}
    for row in sorted(rows, key=lambda r: (r["source_uri"], r["reason"], r["message"])):
        first.setdefault(row["source_uri"], row)
    return list(first.values())


def _describe(files: list[dict[str, str]]) -> str:
    shown = "; ".join(f"{f['source_uri']} ({f['reason']}: {f['message'][:160]})"
                      for f in files[:SHOWN_FILES])
    return shown + (f"; and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES else "")


def check_inputs_unchanged(errors: pa.Table) -> None:
    """Raises RunCheckError naming the files that changed while the run read them."""
    changed = [f for f in failed_files(errors) if f["reason"] == CHANGED_DURING_RUN]
    if changed:
        raise RunCheckError(
            f"{len(changed)} input file(s) changed while the run read them, so its tables "
            "would not match the inputs; nothing published. Rerun once the inputs are stable: "
            + ", ".join(f["source_uri"] for f in changed[:SHOWN_FILES]))


def check_file_budget(errors: pa.Table, files_read: int, max_error_fraction: float) -> None:
    """Raises RunCheckError naming them if too many input files failed as a whole."""
    failed = failed_files(errors)
    if not files_read or len(failed) / files_read <= max_error_fraction:
        return
    raise RunCheckError(
        f"{len(failed)} of {files_read} input files failed as a whole "
        f"({len(failed) / files_read:.1%} > max_error_fraction {max_error_fraction:.1%}): "
        + _describe(failed) + ". See errors.parquet in the staging folder.")
