"""Conservation and error-budget checks on the totals of small hand-made tables.

The totals come from `SummarizeRun`, one pipeline for every scenario below,
so the worst-files ranking and one-row-per-file rules are those of the job.
"""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines.checks import (
    RunCheckError,
    check_conservation,
    check_error_budget,
    check_file_budget,
    check_inputs_unchanged,
)
from transforms.run_checks import SummarizeRun


def _shards(rows):
    return [{"source_uri": u, "input_kind": "tar", "records_read": n, "images_found": n - e,
             "errors": e, "ended_cleanly": True} for u, n, e in rows]


def _errors(rows):
    return [{"record_id": i, "source_uri": u, "key": None, "stage": "decode",
             "reason": "corrupt", "message": "m"} for i, u in rows]


def _file_errors(rows):
    return [{"record_id": None, "source_uri": u, "key": None, "stage": "read", "reason": r,
             "message": f"{u} is bad"} for u, r in rows]


def _save(totals: dict, path: str) -> None:
    # A plain file per scenario, fewer stages than WriteToText's (the file the
    # job writes is tested in tests/transforms/test_run_checks.py).
    with open(path, "w") as f:
        json.dump(totals, f)


def _ids(*xs):
    return [{"record_id": x} for x in xs]


def _copies(*xs):
    return [{"record_id_a": "a", "record_id_b": x} for x in xs]


SCENARIOS = {
    "conserved": dict(shards=_shards([("a.tar", 4, 0)]), embeddings=_ids("x", "y"),
                      exact_copies=_copies("z"), errors=_errors([("e1", "a.tar"),
                                                                 (None, "b.tar")])),
    "lost": dict(shards=_shards([("a.tar", 4, 0)]), embeddings=_ids("x"),
                 exact_copies=_copies("z"), errors=_errors([("e1", "a.tar")])),
    "extra_row": dict(shards=_shards([("a.tar", 4, 0)]), embeddings=_ids("x", "y", "y"),
                      exact_copies=_copies("z"), errors=_errors([("e1", "a.tar")])),
    "id_twice": dict(shards=_shards([("a.tar", 4, 0)]), embeddings=_ids("x", "y"),
                     exact_copies=_copies("e1"), errors=_errors([("e1", "a.tar")])),
    "record_budget": dict(shards=_shards([("a.tar", 30, 0)]),
                          errors=_errors([(f"b{i}", "b.tar") for i in range(5)]
                                         + [("c0", "c.tar")])),
    "file_budget": dict(shards=_shards([("s0.tar", 5, 0)]
                                       + [(f"s{i}.tar", 0, 0) for i in range(1, 10)]),
                        errors=_file_errors([(f"s{i}.tar", "corrupt") for i in range(9)])),
    "failed_files": dict(errors=_file_errors([("b.tar", "shard_truncated"),
                                              ("a.parquet", "schema_mismatch"),
                                              ("b.tar", "corrupt")])
                         + _errors([("e1", "c.jpg")])),
    "unchanged": dict(errors=_file_errors([("a.tar", "corrupt")])),
    "changed": dict(errors=_file_errors([("x.jpg", "changed_during_run")])),
}
TABLES = ("shards", "errors", "embeddings", "exact_copies", "skipped")


@pytest.fixture(scope="module")
def totals(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("totals")
    with TestPipeline(runner="DirectRunner") as p:
        for name, tables in SCENARIOS.items():
            pcolls = {t: p | f"{name}_{t}" >> beam.Create(tables.get(t, []))
                      .with_output_types(dict) for t in TABLES}
            _ = (pcolls | f"Summarize_{name}" >> SummarizeRun()
                 | f"Save_{name}" >> beam.Map(_save, str(root / f"{name}.json")))
    return {name: json.loads((root / f"{name}.json").read_text()) for name in SCENARIOS}


def test_conservation_holds_and_counts_shard_errors_apart(totals):
    counts = check_conservation(totals["conserved"])
    assert counts == {"records_read": 4, "embedded": 2, "exact_copies_not_embedded": 1,
                      "record_errors": 1, "shard_errors": 1}


@pytest.mark.parametrize("scenario, match", [
    ("lost", "records_read=4 but"),                 # a record lost
    ("extra_row", "records_read=4 but"),            # one extra row
    ("id_twice", "appear more than once, e.g. e1"),  # same id in two tables
])
def test_conservation_mismatch_fails(totals, scenario, match):
    with pytest.raises(RunCheckError, match=match):
        check_conservation(totals[scenario])


def test_error_budget_names_worst_files_by_error_rows(totals):
    t = totals["record_budget"]
    check_error_budget(t, 0.2)  # 20% is within the budget
    with pytest.raises(RunCheckError) as info:
        check_error_budget(t, 0.1)
    message = str(info.value)
    assert "6 of 30 records failed" in message
    assert message.index("b.tar (5)") < message.index("c.tar (1)")
    assert "a.tar" not in message


def test_no_records_read_fails_the_run(totals):
    with pytest.raises(RunCheckError, match="no records were read"):
        check_error_budget(totals["failed_files"], 1.0)


def test_file_budget_counts_files_that_failed_whole(totals):
    """Nine of ten shards unreadable: no record error at all, yet the run fails
    and the message names the files with their reasons."""
    t = totals["file_budget"]
    check_error_budget(t, 0.05)  # the record budget alone passes
    with pytest.raises(RunCheckError) as info:
        check_file_budget(t, 0.05)
    message = str(info.value)
    assert "9 of 10 input files failed as a whole" in message
    assert "s0.tar (corrupt: s0.tar is bad)" in message and "and 4 more" in message
    check_file_budget(t, 0.9)  # 90% is within a 90% budget


def test_failed_files_one_row_per_file_ignoring_record_errors(totals):
    t = totals["failed_files"]
    assert [(f["source_uri"], f["reason"]) for f in t["failed_files"]] == [
        ("a.parquet", "schema_mismatch"), ("b.tar", "corrupt")]
    assert t["files_failed"] == 2


def test_changed_input_files_fail_the_run_by_name(totals):
    check_inputs_unchanged(totals["unchanged"])
    with pytest.raises(RunCheckError, match="changed while the run read them.*x.jpg"):
        check_inputs_unchanged(totals["changed"])
