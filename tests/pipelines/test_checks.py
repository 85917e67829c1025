"""Conservation and error-budget checks on small hand-made tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.checks import (
    RunCheckError,
    check_conservation,
    check_error_budget,
    check_file_budget,
    check_inputs_unchanged,
    failed_files,
)
from transforms import schemas


def _shards(rows):
    return pa.Table.from_pylist([{"source_uri": u, "input_kind": "tar", "records_read": n,
                                  "images_found": n - e, "errors": e, "ended_cleanly": True}
                                 for u, n, e in rows], schema=schemas.SHARDS_SCHEMA)


def _errors(rows):
    return pa.Table.from_pylist([{"record_id": i, "source_uri": u, "key": None,
                                  "stage": "decode", "reason": "corrupt", "message": "m"}
                                 for i, u in rows], schema=schemas.ERRORS_SCHEMA)


IDS = lambda *xs: pa.array(list(xs), pa.string())


def test_conservation_holds_and_counts_shard_errors_apart():
    errors = _errors([("e1", "a.tar"), (None, "b.tar")])
    counts = check_conservation(_shards([("a.tar", 4, 0)]), IDS("x", "y"), IDS("z"), errors)
    assert counts == {"records_read": 4, "embedded": 2, "exact_copies_not_embedded": 1,
                      "record_errors": 1, "shard_errors": 1}


@pytest.mark.parametrize("embedded, copies, match", [
    (IDS("x"), IDS("z"), "records_read=4 but"),           # a record lost
    (IDS("x", "y", "y"), IDS("z"), "records_read=4 but"),  # one extra row
    (IDS("x", "y"), IDS("e1"), "appear more than once"),   # same id in two tables
])
def test_conservation_mismatch_fails(embedded, copies, match):
    with pytest.raises(RunCheckError, match=match):
        check_conservation(_shards([("a.tar", 4, 0)]), embedded, copies,
                           _errors([("e1", "a.tar")]))


def test_error_budget_names_worst_files_by_error_rows():
    errors = _errors([(f"b{i}", "b.tar") for i in range(5)] + [("c0", "c.tar")])
    check_error_budget(errors, 30, 6, 0.2)  # 20% is within the budget
    with pytest.raises(RunCheckError) as info:
        check_error_budget(errors, 30, 6, 0.1)
    message = str(info.value)
    assert "6 of 30 records failed" in message
    assert message.index("b.tar (5)") < message.index("c.tar (1)")
    assert "a.tar" not in message


def _file_errors(rows):
    return pa.Table.from_pylist([{"record_id": None, "source_uri": u, "key": None,
                                  "stage": "read", "reason": r, "message": f"{u} is bad"}
                                 for u, r in rows], schema=schemas.ERRORS_SCHEMA)


def test_file_budget_counts_files_that_failed_whole():
    """Nine of ten shards unreadable: no record error at all, yet the run fails
    and the message names the files with their reasons."""
    errors = _file_errors([(f"s{i}.tar", "corrupt") for i in range(9)])
    check_error_budget(errors, 5, 0, 0.05)  # the record budget alone passes
    with pytest.raises(RunCheckError) as info:
        check_file_budget(errors, 10, 0.05)
    message = str(info.value)
    assert "9 of 10 input files failed as a whole" in message
    assert "s0.tar (corrupt: s0.tar is bad)" in message and "and 4 more" in message
    check_file_budget(errors, 10, 0.9)  # 90% is within a 90% budget


def test_failed_files_one_row_per_file_ignoring_record_errors():
    errors = pa.concat_tables([_file_errors([("b.tar", "shard_truncated"),
                                             ("a.parquet", "schema_mismatch"),
                                             ("b.tar", "corrupt")]),
                               _errors([("e1", "c.jpg")])])
    assert [(f["source_uri"], f["reason"]) for f in failed_files(errors)] == [
        ("a.parquet", "schema_mismatch"), ("b.tar", "corrupt")]


def test_changed_input_files_fail_the_run_by_name():
    check_inputs_unchanged(_file_errors([("a.tar", "corrupt")]))
    with pytest.raises(RunCheckError, match="changed while the run read them.*x.jpg"):
        check_inputs_unchanged(_file_errors([("x.jpg", "changed_during_run")]))
