"""The numbers a run is checked on, computed on the engine (issue 15).

    ids of embeddings + copies + record errors, files of errors
        -> CombinePerKey (rows per id; rows, first whole-file error, changed per file)
        -> PerKeyFragments (ids seen twice, failed / changed files, errors per file)
    shard, error, embedding, copy and skipped rows -> Tag... (one small tagged value each)
    -> AllFragments (Flatten) -> RunTotals (one CombineGlobally)
    -> WriteRunTotals (`_checks.json` in staging)

The launcher of a Dataflow run is a laptop: it must not read every record_id
to check that none repeats. Everything that grows with the number of records
is reduced here, by combiners (per key, then globally), to one small JSON
object: counts, counts by reason, and a few examples of what went wrong
(`pipelines/checks.py` checks it before the run is published).
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.records import CHANGED_DURING_RUN

CHECKS = "_checks"  # <staging>/_checks.json; a leading "_" keeps table readers off it
SHOWN = 5  # examples kept of each kind (failed files, repeated ids, changed files, worst files)

# Tags of the fragments RunTotals combines.
SHARD, ERROR, EMBEDDED, COPY, SKIPPED = "shard", "error", "embedded", "copy", "skipped"
REPEATED_ID, FAILED_FILE, CHANGED_FILE, FILE_ERRORS = (
    "repeated_id", "failed_file", "changed_file", "file_errors")

_SUMS = ("records_read", "embedded", "exact_copies_not_embedded", "record_errors",
         "shard_errors", "files", "shards_not_ended_cleanly", "files_skipped",
         "ids_seen_more_than_once", "files_failed", "files_changed")
_BY = ("skipped_by_reason", "errors_by_stage", "errors_by_reason")
# Bounded example lists: (key of the accumulator, sort key of an entry).
_EXAMPLES = {
    "repeated_ids": lambda rid: rid,
    "failed_files": lambda f: f["source_uri"],
    "changed_files": lambda uri: uri,
    "worst_files": lambda uri_n: (-uri_n[1], uri_n[0]),  # most error rows first
}


def _keep(entries: list, new: list, name: str) -> list:
    """The SHOWN first of `entries + new` in the order of `_EXAMPLES[name]`."""
    return sorted(entries + new, key=_EXAMPLES[name])[:SHOWN]


class RunTotalsFn(beam.CombineFn):
    """Tagged fragments -> the RunTotals dict (JSON-able, bounded in size).

    Every accumulator holds a fixed set of counters, counts by reason or stage
    (a few codes) and at most SHOWN examples of each kind, so partial combines
    on many workers stay small however many records the run read.
    """

    def create_accumulator(self) -> dict:
        acc = {k: 0 for k in _SUMS}
        acc.update({k: {} for k in _BY})
        acc.update({k: [] for k in _EXAMPLES})
        return acc

    def add_input(self, acc: dict, fragment: tuple) -> dict:
        tag, value = fragment
        if tag == EMBEDDED:
            acc["embedded"] += 1
        elif tag == COPY:
            acc["exact_copies_not_embedded"] += 1
        elif tag == SHARD:
            records_read, ended_cleanly = value
            acc["records_read"] += records_read
            acc["files"] += 1
            acc["shards_not_ended_cleanly"] += 0 if ended_cleanly else 1
        elif tag == ERROR:
            stage, reason, of_a_record = value
            acc["record_errors" if of_a_record else "shard_errors"] += 1
            _add(acc["errors_by_stage"], stage, 1)
            _add(acc["errors_by_reason"], reason, 1)
        elif tag == SKIPPED:
            acc["files_skipped"] += 1
            _add(acc["skipped_by_reason"], value, 1)
        elif tag == REPEATED_ID:
            acc["ids_seen_more_than_once"] += 1
            acc["repeated_ids"] = _keep(acc["repeated_ids"], [value], "repeated_ids")
        elif tag == FAILED_FILE:
            acc["files_failed"] += 1
            acc["failed_files"] = _keep(acc["failed_files"], [value], "failed_files")
        elif tag == CHANGED_FILE:
            acc["files_changed"] += 1
            acc["changed_files"] = _keep(acc["changed_files"], [value], "changed_files")
        elif tag == FILE_ERRORS:
            acc["worst_files"] = _keep(acc["worst_files"], [list(value)], "worst_files")
        else:
            raise ValueError(f"unknown RunTotals fragment {tag!r}")
        return acc

    def merge_accumulators(self, accumulators) -> dict:
        merged = self.create_accumulator()
        for acc in accumulators:
            for k in _SUMS:
                merged[k] += acc[k]
            for k in _BY:
                for key, n in acc[k].items():
                    _add(merged[k], key, n)
            for k in _EXAMPLES:
                merged[k] = _keep(merged[k], acc[k], k)
        return merged

    def extract_output(self, acc: dict) -> dict:
        out = dict(acc)
        for k in _BY:  # sorted by code, as summary.json always listed them
            out[k] = dict(sorted(acc[k].items(), key=lambda kv: str(kv[0])))
        return out


def _add(counts: dict, key, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


# Keys of the one per-key combine: a record id, or the uri of a file with error rows.
_ID, _FILE = "id", "file"


def _error_keys(row: dict):
    """An error row -> its id's key (record errors) and its file's key.

    A file's value is (error rows, first whole-file (reason, message) or None,
    whether a whole-file row says the file changed during the run).
    """
    if row["record_id"] is not None:
        yield (_ID, row["record_id"]), (1, None, False)
        yield (_FILE, row["source_uri"]), (1, None, False)
    else:
        yield (_FILE, row["source_uri"]), (
            1, (row["reason"], row["message"]), row["reason"] == CHANGED_DURING_RUN)


def _merge_per_key(values) -> tuple:
    """(count, first whole-file error, changed) of a key: associative, so the
    runner may merge partial results in any order."""
    n, first, changed = 0, None, False
    for count, error, flag in values:
        n += count
        if error is not None and (first is None or error < first):
            first = error
        changed = changed or flag
    return n, first, changed


def _per_key_fragments(kv):
    (kind, key), (n, first, changed) = kv
    if kind == _ID:
        if n > 1:
            yield REPEATED_ID, key
        return
    yield FILE_ERRORS, (key, n)
    if first is not None:  # a file with a whole-file error row: once, with its first row
        yield FAILED_FILE, {"source_uri": key, "reason": first[0], "message": first[1]}
    if changed:
        yield CHANGED_FILE, key


class SummarizeRun(beam.PTransform):
    """The embed graph's rows -> one RunTotals dict (a PCollection of one element).

    Takes a dict of PCollections of table rows (dicts as written):
    `shards`, `errors`, `embeddings`, `exact_copies` (settled
    `exact_duplicates` rows) and `skipped`. Returns a PCollection holding one
    dict with `records_read` (sum over shards), `embedded`,
    `exact_copies_not_embedded`, `record_errors`, `shard_errors`, `files`,
    `shards_not_ended_cleanly`, `files_skipped`, `skipped_by_reason`,
    `errors_by_stage`, `errors_by_reason`; `ids_seen_more_than_once` (ids
    found more than once over embeddings, copies' `record_id_b` and record
    errors) with `repeated_ids`; `files_failed` (files with a whole-file error
    row) with `failed_files` (first row per file, the first files by uri);
    `files_changed` with `changed_files` (reason `changed_during_run`); and
    `worst_files` ([uri, error rows], most first). Example lists hold at most
    `SHOWN` entries. Emits its one dict even when every input is empty.

    Two shuffles in all: one combine per key (each record id, each file with
    errors), then one global combine of small tagged values.
    """

    def expand(self, tables: dict[str, beam.PCollection]) -> beam.PCollection[dict]:
        shards, errors, embeddings, copies, skipped = (
            tables[k] for k in ("shards", "errors", "embeddings", "exact_copies", "skipped"))
        per_key = (
            (embeddings | "KeyEmbeddedIds" >> beam.Map(
                lambda r: ((_ID, r["record_id"]), (1, None, False))),
             copies | "KeyCopyIds" >> beam.Map(
                 lambda r: ((_ID, r["record_id_b"]), (1, None, False))),
             errors | "KeyErrors" >> beam.FlatMap(_error_keys))
            | "AllKeys" >> beam.Flatten()
            | "CombinePerKey" >> beam.CombinePerKey(_merge_per_key)
            | "PerKeyFragments" >> beam.FlatMap(_per_key_fragments))
        fragments = (
            shards | "TagShards" >> beam.Map(
                lambda r: (SHARD, (r["records_read"], r["ended_cleanly"]))),
            errors | "TagErrors" >> beam.Map(
                lambda r: (ERROR, (r["stage"], r["reason"], r["record_id"] is not None))),
            embeddings | "TagEmbedded" >> beam.Map(lambda r: (EMBEDDED, None)),
            copies | "TagCopies" >> beam.Map(lambda r: (COPY, None)),
            skipped | "TagSkipped" >> beam.Map(lambda r: (SKIPPED, r["reason"])),
            per_key)
        return (fragments
                | "AllFragments" >> beam.Flatten()
                | "RunTotals" >> beam.CombineGlobally(RunTotalsFn()))


class WriteRunTotals(beam.PTransform):
    """The RunTotals dict -> `<staging>/_checks.json` (one line of JSON)."""

    def __init__(self, staging: str):
        super().__init__()
        self._path = FileSystems.join(staging, CHECKS)

    def expand(self, totals: beam.PCollection[dict]):
        return (totals
                | "TotalsToJson" >> beam.Map(json.dumps)
                | "WriteJson" >> beam.io.WriteToText(self._path, file_name_suffix=".json",
                                                     num_shards=1, shard_name_template=""))


def checks_path(staging: str) -> str:
    return FileSystems.join(staging, CHECKS + ".json")


def read_totals(staging: str) -> dict:
    """The RunTotals dict WriteRunTotals wrote below `staging`."""
    with FileSystems.open(checks_path(staging)) as f:
        return json.loads(f.read().decode())
