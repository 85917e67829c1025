"""SummarizeRun on small hand-built rows with known totals."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.run_checks import (
    CHECKS,
    SHOWN,
    RunTotalsFn,
    SummarizeRun,
    WriteRunTotals,
    read_totals,
)


def shard(uri, n, clean=True):
    return {"source_uri": uri, "input_kind": "tar", "records_read": n, "images_found": n,
            "errors": 0, "ended_cleanly": clean}


def error(rid, uri, reason="corrupt", stage="decode", message="m"):
    return {"record_id": rid, "source_uri": uri, "key": None, "stage": stage,
            "reason": reason, "message": message}


def emb(rid):
    return {"record_id": rid, "source_uri": "a.tar", "key": rid}


def copy(a, b):
    return {"record_id_a": a, "record_id_b": b, "sha256": "s"}


def skip(uri, reason):
    return {"source_uri": uri, "reason": reason, "message": "m"}


def summarize(p, shards=(), errors=(), embeddings=(), copies=(), skipped=()):
    def create(label, rows):
        # Create on an empty list needs a type hint; any row type does.
        return p | label >> beam.Create(list(rows)).with_output_types(dict)

    return ({"shards": create("Shards", shards), "errors": create("Errors", errors),
             "embeddings": create("Embeddings", embeddings),
             "exact_copies": create("Copies", copies), "skipped": create("Skipped", skipped)}
            | SummarizeRun())


def run_totals(tmp_path, **tables) -> dict:
    """The totals SummarizeRun computes, through the file the launcher reads."""
    with TestPipeline(runner="DirectRunner") as p:
        _ = summarize(p, **tables) | WriteRunTotals(str(tmp_path))
    return read_totals(str(tmp_path))


EMPTY = {
    "records_read": 0, "embedded": 0, "exact_copies_not_embedded": 0, "record_errors": 0,
    "shard_errors": 0, "files": 0, "shards_not_ended_cleanly": 0, "files_skipped": 0,
    "ids_seen_more_than_once": 0, "files_failed": 0, "files_changed": 0,
    "skipped_by_reason": {}, "errors_by_stage": {}, "errors_by_reason": {},
    "repeated_ids": [], "failed_files": [], "changed_files": [], "worst_files": [],
}


def test_known_totals_of_a_small_run():
    changed = error(None, "c.jpg", "changed_during_run", "read", "other bytes")
    expected = dict(
        EMPTY, records_read=7, embedded=3, exact_copies_not_embedded=1, record_errors=2,
        shard_errors=3, files=3, shards_not_ended_cleanly=1, files_skipped=3,
        files_failed=2, files_changed=1,
        skipped_by_reason={"not_an_input": 2, "unsupported_format": 1},
        errors_by_stage={"decode": 2, "read": 3},
        errors_by_reason={"changed_during_run": 1, "corrupt": 3, "shard_truncated": 1},
        failed_files=[{"source_uri": "b.tar", "reason": "corrupt", "message": "b2"},
                      {"source_uri": "c.jpg", "reason": "changed_during_run",
                       "message": "other bytes"}],
        changed_files=["c.jpg"],
        worst_files=[["b.tar", 3], ["a.tar", 1], ["c.jpg", 1]])
    with TestPipeline(runner="DirectRunner") as p:
        totals = summarize(
            p, shards=[shard("a.tar", 4), shard("b.tar", 2, clean=False), shard("c.jpg", 1)],
            embeddings=[emb("x"), emb("y"), emb("z")], copies=[copy("x", "w")],
            errors=[error("e1", "a.tar"), error("e2", "b.tar"),
                    # two whole-file rows of one file: it counts once, by its first row
                    error(None, "b.tar", "shard_truncated", "read", "b1"),
                    error(None, "b.tar", "corrupt", "read", "b2"), changed],
            skipped=[skip("n.txt", "not_an_input"), skip("m.json", "not_an_input"),
                     skip("h.heic", "unsupported_format")])
        assert_that(totals, equal_to([expected]))


def test_ids_seen_more_than_once_over_embeddings_copies_and_errors():
    with TestPipeline(runner="DirectRunner") as p:
        totals = summarize(
            p, shards=[shard("a.tar", 6)],
            embeddings=[emb("x"), emb("y"), emb("y"), emb("u")],
            copies=[copy("u", "x")],          # x embedded and listed as a copy
            errors=[error("x", "a.tar"), error("v", "a.tar")])  # and as an error
        assert_that(totals | beam.Map(lambda t: (t["ids_seen_more_than_once"],
                                                 t["repeated_ids"], t["embedded"])),
                    equal_to([(2, ["x", "y"], 4)]))


def test_every_input_empty_still_gives_one_totals_dict(tmp_path):
    assert run_totals(tmp_path) == EMPTY
    assert (tmp_path / f"{CHECKS}.json").exists()


def test_examples_are_bounded_and_counts_are_not(tmp_path):
    errors = [error(None, f"f{i}.tar", "corrupt", "read") for i in range(8)]
    errors += [error(f"r{i}", "f7.tar") for i in range(3)]
    errors += [error(f"s{i}", "f3.tar") for i in range(3)]
    totals = run_totals(tmp_path, shards=[shard(f"f{i}.tar", 1) for i in range(8)],
                        errors=errors)
    assert totals["files_failed"] == 8
    assert [f["source_uri"] for f in totals["failed_files"]] == [
        f"f{i}.tar" for i in range(SHOWN)]
    # most error rows first, ties by uri
    assert totals["worst_files"] == [["f3.tar", 4], ["f7.tar", 4], ["f0.tar", 1],
                                     ["f1.tar", 1], ["f2.tar", 1]]
    assert totals["record_errors"] == 6 and totals["shard_errors"] == 8
    json.dumps(totals)  # the file's contract: plain JSON


@pytest.mark.parametrize("split", [0, 3, 7, 11])
def test_merged_partial_totals_equal_one_pass(split):
    """Workers combine parts of the input; merging their accumulators must not
    depend on where the input was cut."""
    fragments = ([("shard", (2, True)), ("shard", (1, False)), ("embedded", None)]
                 + [("failed_file", {"source_uri": f"f{i}", "reason": "corrupt",
                                     "message": "m"}) for i in (6, 2, 9, 0, 4, 7, 1)]
                 + [("file_errors", (f"f{i}", i)) for i in range(6)]
                 + [("error", ("read", "corrupt", False)), ("skipped", "not_an_input"),
                    ("repeated_id", "q"), ("changed_file", "f2"), ("copy", None)])
    fn = RunTotalsFn()

    def combine(part):
        acc = fn.create_accumulator()
        for f in part:
            acc = fn.add_input(acc, f)
        return acc

    whole = fn.extract_output(combine(fragments))
    merged = fn.extract_output(fn.merge_accumulators(
        [combine(fragments[:split]), combine(fragments[split:])]))
    assert merged == whole
    assert [f["source_uri"] for f in whole["failed_files"]] == ["f0", "f1", "f2", "f4", "f6"]
    assert whole["worst_files"][0] == ["f5", 5] and len(whole["worst_files"]) == SHOWN


def test_unknown_fragment_is_an_error():
    with pytest.raises(ValueError, match="unknown RunTotals fragment"):
        RunTotalsFn().add_input(RunTotalsFn().create_accumulator(), ("bogus", 1))
