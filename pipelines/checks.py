"""Checks a run must pass before it is published.

Each check reads the RunTotals dict the embed job computed on the engine
(`transforms.run_checks.SummarizeRun`, `_checks.json`), so the launcher holds
a few numbers, not the run's record ids.

Conservation: every record read is in exactly one of the embeddings table,
the exact-copies list (a byte copy of an embedded or failed record) or the
errors table, and no record_id appears twice. Error budget: the share of
records that failed, and the share of input files that failed as a whole
(unreadable, wrong schema, cut short: their records cannot even be counted),
each stay within `max_error_fraction`. Inputs unchanged: no file read
different bytes in the data pass than in the index pass.
"""

from __future__ import annotations

from transforms.run_checks import SHOWN

SHOWN_FILES = SHOWN
CONSERVED = ("records_read", "embedded", "exact_copies_not_embedded", "record_errors",
             "shard_errors")


class RunCheckError(RuntimeError):
    """A run's numbers do not add up, or too many records failed."""


def check_conservation(totals: dict) -> dict[str, int]:
    """Raises RunCheckError unless records_read == embedded + copies + errors, ids unique.

    Returns the counts that were compared.
    """
    counts = {k: totals[k] for k in CONSERVED}
    accounted = counts["embedded"] + counts["exact_copies_not_embedded"] + counts["record_errors"]
    problems = []
    if accounted != counts["records_read"]:
        problems.append(f"records_read={counts['records_read']} but embedded + copies + errors"
                        f" = {accounted}")
    if totals["ids_seen_more_than_once"]:
        problems.append(f"{totals['ids_seen_more_than_once']} record_id(s) appear more than "
                        "once, e.g. " + ", ".join(totals["repeated_ids"]))
    if problems:
        raise RunCheckError("conservation check failed: " + "; ".join(problems))
    return counts


def check_error_budget(totals: dict, max_error_fraction: float) -> None:
    """Raises RunCheckError naming the worst files if too many records failed."""
    records_read, record_errors = totals["records_read"], totals["record_errors"]
    if records_read == 0:
        raise RunCheckError("no records were read: check --input")
    fraction = record_errors / records_read
    if fraction <= max_error_fraction:
        return
    raise RunCheckError(
        f"{record_errors} of {records_read} records failed ({fraction:.1%} > "
        f"max_error_fraction {max_error_fraction:.1%}); worst files (errors): "
        + ", ".join(f"{uri} ({n})" for uri, n in totals["worst_files"])
        + ". See errors.parquet in the staging folder.")


def _describe(files: list[dict[str, str]], total: int) -> str:
    shown = "; ".join(f"{f['source_uri']} ({f['reason']}: {f['message'][:160]})"
                      for f in files[:SHOWN_FILES])
    return shown + (f"; and {total - SHOWN_FILES} more" if total > SHOWN_FILES else "")


def check_inputs_unchanged(totals: dict) -> None:
    """Raises RunCheckError naming the files that changed while the run read them."""
    if totals["files_changed"]:
        raise RunCheckError(
            f"{totals['files_changed']} input file(s) changed while the run read them, so its "
            "tables would not match the inputs; nothing published. Rerun once the inputs are "
            "stable: " + ", ".join(totals["changed_files"][:SHOWN_FILES]))


def check_file_budget(totals: dict, max_error_fraction: float) -> None:
    """Raises RunCheckError naming them if too many input files failed as a whole."""
    failed, files_read = totals["files_failed"], totals["files"]
    if not files_read or failed / files_read <= max_error_fraction:
        return
    raise RunCheckError(
        f"{failed} of {files_read} input files failed as a whole "
        f"({failed / files_read:.1%} > max_error_fraction {max_error_fraction:.1%}): "
        + _describe(totals["failed_files"], failed) + ". See errors.parquet in the staging folder.")
