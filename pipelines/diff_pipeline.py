"""What changed between two runs: a small Beam job over their published tables.

    ReadStatuses (before) + ReadStatuses (after) -> DiffRecords -> WriteChanges
    ReadPairs (before) + ReadPairs (after) -> DiffPairs
    facts of both -> CountFacts -> WriteDiffCounts

Both runs' rows travel as Arrow tables in `diff_buckets` buckets by a hash of
their ids (`transforms.diff`), so a worker holds one bucket whatever the
size of the runs.

`clipdedup diff RUN_A RUN_B` (`tools/diff.py`) and a run given `--previous RUN`
(`write_changes`, called by `pipelines.jobs` before it publishes) run the same
job. Every join is on the engine (`transforms.diff`); the launcher reads two
`summary.json` files and one small counts file, so runs of any size compare
on any runner. The earlier run is only read.

Up to `diff_in_process_max_rows` rows in the compared tables (counted from
their footers) the same functions run in the launcher instead, over one
bucket (`diff_in_process`): a job start costs more than such a diff, and a
small night is dominated by fixed costs.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import diff, schemas
from transforms.parquet_open import open_parquet, parquet_footer
from transforms.write import PART_PREFIX, SUFFIX

log = logging.getLogger("clipdedup")

CHANGES = "changes"
COUNTS = "_diff_counts"
SUMMARY, SUCCESS = "summary.json", "_SUCCESS"
PAIR_TABLES = ("duplicates", "near_duplicates")
MANIFEST_TABLES = ("keep", "drop") + PAIR_TABLES
ROWS_PER_BUCKET = 500_000  # a bucket's rows are compared on one worker: ~50-300 MB
DEFAULT_IN_PROCESS_MAX_ROWS = 1_000_000  # config: diff_in_process_max_rows


def _table(folder: str, name: str) -> str:
    return FileSystems.join(folder, f"{name}.parquet")


def check_run(folder: str, published: bool = True) -> None:
    """Raises ValueError unless `folder` is a (published) run with a manifest and pair tables."""
    if published and not FileSystems.exists(FileSystems.join(folder, SUCCESS)):
        raise ValueError(f"{folder} is not a published run folder (no {SUCCESS}); "
                         "diff and --previous take published runs only")
    missing = [f"{t}.parquet" for t in MANIFEST_TABLES if not FileSystems.exists(_table(folder, t))]
    if missing:
        raise ValueError(f"run {folder} has no {', '.join(missing)}: diff needs runs that "
                         "ran the mine stage")


def _status_tables(folder: str) -> list[tuple[str, str]]:
    """`(status, table path)` of a run's keep, drop and (when it has one) errors tables."""
    errors = _table(folder, "errors")
    return [(diff.KEPT, _table(folder, "keep")), (diff.DROPPED, _table(folder, "drop"))] + (
        [(diff.ERROR, errors)] if FileSystems.exists(errors) else [])


def build_pipeline(before: str, after: str, workdir: str,
                   options: PipelineOptions | None = None,
                   buckets: tuple[int, int] = (1, 1)) -> beam.Pipeline:
    """The unrun diff job: `workdir/changes/part-*.parquet` and `workdir/_diff_counts.json`;
    records and pairs are compared in `buckets` (records, pairs) buckets
    (`transforms.diff.hash_buckets`, `diff_buckets`)."""
    record_buckets, pair_buckets = buckets
    p = beam.Pipeline(options=options or PipelineOptions([]))
    records = ([p | f"{label}Statuses" >> diff.ReadStatuses(
                    _status_tables(folder), label.lower(), record_buckets)
                for label, folder in (("Before", before), ("After", after))]
               | "BothStatuses" >> beam.Flatten()
               | "DiffRecords" >> diff.DiffRecords())
    _ = records["changes"] | "WriteChanges" >> beam.io.WriteToParquet(
        FileSystems.join(workdir, CHANGES, PART_PREFIX), schema=schemas.CHANGES_SCHEMA,
        file_name_suffix=SUFFIX)
    pairs = ([p | f"{label}Pairs" >> diff.ReadPairs(
                _table(folder, "duplicates"), _table(folder, "near_duplicates"),
                label.lower(), pair_buckets)
              for label, folder in (("Before", before), ("After", after))]
             | "BothPairs" >> beam.Flatten()
             | "DiffPairs" >> diff.DiffPairs())
    _ = ((records["facts"], pairs)
         | "AllFacts" >> beam.Flatten()
         | "CountFacts" >> diff.CountFacts()
         | "CountsToJson" >> beam.Map(json.dumps, sort_keys=True)
         | "WriteDiffCounts" >> beam.io.WriteToText(FileSystems.join(workdir, COUNTS),
                                                    file_name_suffix=".json", num_shards=1,
                                                    shard_name_template=""))
    return p


def table_rows(*folders: str) -> dict[str, int]:
    """Rows of each table a diff reads, summed over `folders`, from their footers."""
    rows = dict.fromkeys(MANIFEST_TABLES + ("errors",), 0)
    for folder in folders:
        for name in rows:
            path = _table(folder, name)
            if name != "errors" or FileSystems.exists(path):
                rows[name] += parquet_footer(path).num_rows
    return rows


def diff_buckets(rows: dict[str, int]) -> tuple[int, int]:
    """How many buckets the diff job compares records and pairs in, given `table_rows`:
    one per `ROWS_PER_BUCKET` rows of their tables, so a worker holds about that many."""
    def buckets(names: tuple[str, ...]) -> int:
        return max(1, -(-sum(rows[name] for name in names) // ROWS_PER_BUCKET))

    return buckets(("keep", "drop", "errors")), buckets(PAIR_TABLES)


def _read(path: str, columns: list[str]):
    """One table of a run, a row group at a time."""
    pf = open_parquet(path)
    for group in range(pf.num_row_groups):
        yield pf.read_row_group(group, columns=columns)


def _status_rows_in_process(folder: str, side: str) -> list[pa.Table]:
    return [diff.status_rows(batch, status, side)
            for status, path in _status_tables(folder)
            for batch in _read(path, diff.status_columns(status))]


def _pair_rows_in_process(folder: str, side: str) -> list[pa.Table]:
    return [diff.pair_rows(batch, kind, side)
            for kind, name in zip(diff.PAIR_KINDS, PAIR_TABLES)
            for batch in _read(_table(folder, name), ["record_id_a", "record_id_b"])]


def diff_in_process(before: str, after: str) -> tuple[dict, list[dict]]:
    """The diff job's counts and changes rows, computed in this process with the job's
    own functions (`transforms.diff`), every row in one bucket; for small runs only."""
    facts: dict[str, int] = {}
    rows: list[dict] = []
    groups: dict[str, tuple[int, int]] = {}

    def add(name: str, n: int) -> None:
        facts[name] = facts.get(name, 0) + n

    for out in diff.record_facts(_status_rows_in_process(before, diff.BEFORE)
                                 + _status_rows_in_process(after, diff.AFTER)):
        if not isinstance(out, beam.pvalue.TaggedOutput):
            rows.append(out)
        elif out.tag == diff.GROUP_COUNTS:
            groups[out.value[0]] = out.value[1]  # one bucket: each keeper once
        else:
            add(*out.value)
    for keeper_counts in groups.items():
        for name, n in diff.new_with_old(keeper_counts):
            add(name, n)
    for name, n in diff.pair_facts(_pair_rows_in_process(before, diff.BEFORE)
                                   + _pair_rows_in_process(after, diff.AFTER)):
        add(name, n)
    return diff.as_counts(list(facts.items())), rows


def _write_rows(rows: list[dict], target: str) -> None:
    with FileSystems.create(target) as sink:
        pq.write_table(pa.Table.from_pylist(rows, schema=schemas.CHANGES_SCHEMA), sink)


def _merge_parts(folder: str, target: str) -> None:
    """The part files of the changes table -> one Parquet file, a row group at a time."""
    parts = sorted(m.path for m in FileSystems.match(
        [FileSystems.join(folder, "*" + SUFFIX)])[0].metadata_list)
    with FileSystems.create(target) as sink, pq.ParquetWriter(sink, schemas.CHANGES_SCHEMA) as w:
        for path in parts:
            part = open_parquet(path)
            for i in range(part.num_row_groups):
                w.write_table(part.read_row_group(i).cast(schemas.CHANGES_SCHEMA))


def read_summary(folder: str) -> dict:
    path = FileSystems.join(folder, SUMMARY)
    if not FileSystems.exists(path):
        return {}
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode())


def error_rate(summary: dict) -> float | None:
    """Records that failed / records read, from a summary's counts (None if it has none)."""
    counts = summary.get("counts", {})
    read = counts.get("records_read")
    return counts.get("record_errors", 0) / read if read else None


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def diff_dict(counts: dict, before: dict, after: dict) -> dict:
    """The `diff` section of summary.json from the job's counts and the two summaries."""
    records = {name: counts[name] for name in diff.CHANGES}
    records.update(before=counts["records_before"], after=counts["records_after"])
    rate_before, rate_after = error_rate(before), error_rate(after)
    pairs_before = counts["pairs_before"]
    return {
        "before_run": before.get("run_id"), "after_run": after.get("run_id"),
        "records": records,
        # new images in a group with an image of the earlier run (whichever is kept)
        "new_duplicates_of_old": counts["new_in_groups_with_old"],
        "new_duplicate_share": _ratio(counts["new_in_groups_with_old"], counts[diff.NEW]),
        "pairs": {"before": pairs_before, "after": counts["pairs_after"],
                  "new": counts["pairs_new"], "vanished": counts["pairs_vanished"],
                  "changed_kind": counts["pairs_changed_kind"]},
        "pair_count_change": _ratio(counts["pairs_after"] - pairs_before, pairs_before),
        "errors": {"rate_before": rate_before, "rate_after": rate_after,
                   "rate_change": (None if rate_before is None or rate_after is None
                                   else round(rate_after - rate_before, 6))},
    }


def diff_runs(before: str, after: str, options: PipelineOptions | None = None, *,
              changes: str | None = None, after_summary: dict | None = None,
              workdir: str | None = None,
              in_process_max_rows: int = DEFAULT_IN_PROCESS_MAX_ROWS) -> dict:
    """Runs the diff job of two run folders and returns the diff dict.

    Args:
        before / after: run folders; `after` may be a staging folder when
            `after_summary` is given (a run that is not published yet).
        changes: where to write changes.parquet (None: not kept).
        after_summary: the later run's summary (default: its summary.json).
        workdir: where the job writes its part files (default: next to
            `changes`, else a local temp folder); deleted afterwards.
        in_process_max_rows: up to this many rows in both runs' tables, the
            diff runs in this process (`diff_in_process`), not as a Beam job.
    """
    check_run(before)
    check_run(after, published=after_summary is None)
    rows = table_rows(before, after)
    if sum(rows.values()) <= in_process_max_rows:
        counts, changed = diff_in_process(before, after)
        if changes:
            _write_rows(changed, changes)
        return _finish(counts, before, after, after_summary, changes, "in_process")
    if workdir is None:
        workdir = (FileSystems.join(FileSystems.split(changes)[0], f"_diff-{uuid.uuid4().hex[:12]}")
                   if changes else tempfile.mkdtemp(prefix="clipdedup-diff-"))
    try:
        result = build_pipeline(before, after, workdir, options, diff_buckets(rows)).run()
        result.wait_until_finish()
        with FileSystems.open(FileSystems.join(workdir, COUNTS + ".json")) as f:
            counts = json.loads(f.read().decode())
        if changes:
            _merge_parts(FileSystems.join(workdir, CHANGES), changes)
    finally:
        _remove(workdir)
    return _finish(counts, before, after, after_summary, changes, "beam_job")


def _finish(counts: dict, before: str, after: str, after_summary: dict | None,
            changes: str | None, computed: str) -> dict:
    out = diff_dict(counts, read_summary(before),
                    after_summary if after_summary is not None else read_summary(after))
    out.update(changes_table=changes, computed=computed)
    return out


def write_changes(previous_folder: str, staging_folder: str, summary: dict,
                  options: PipelineOptions | None = None,
                  in_process_max_rows: int = DEFAULT_IN_PROCESS_MAX_ROWS) -> dict:
    """`changes.parquet` in a run's staging folder against the previous published run.

    Called by `pipelines.jobs` after the mine stage's tables are merged and
    before the run is published; returns the `diff` section of its summary.
    """
    out = diff_runs(previous_folder, staging_folder, options,
                    changes=_table(staging_folder, CHANGES), after_summary=summary,
                    workdir=FileSystems.join(staging_folder, "_diff"),
                    in_process_max_rows=in_process_max_rows)
    out["changes_table"] = f"{CHANGES}.parquet"  # inside the run folder, wherever it is published
    log.info("changes against %s: %s", previous_folder, json.dumps(out["records"], sort_keys=True))
    return out


def _remove(workdir: str) -> None:
    """Deletes the job's own part files and counts (never anything else)."""
    try:
        if FileSystems.exists(workdir):
            FileSystems.delete([workdir])
    except (OSError, BeamIOError) as exc:  # the diff is done; leftovers are only clutter
        log.warning("could not delete the diff job's temporary folder %s: %s", workdir, exc)
