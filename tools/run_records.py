"""A published run's records, vectors and decisions, looked up for a few pairs.

`clipdedup evaluate` and `clipdedup calibrate` read a run through this module:

- which records a label names (by record_id, key or source path), and whether
  the run embedded them, found them to be byte copies of an embedded record
  (`exact_duplicates`: not embedded, they share that record's vector), or
  failed them (`errors`);
- each embedded record's vector (the run's own table, or for a `mine`-only
  run the table it mined), searched with `tools.query.RunIndex`;
- which pairs the pair tables hold and which records the manifest grouped.

Only the rows that concern the records asked about are kept: every table is
read file by file and filtered with pyarrow, so a run of millions of records
costs one pass over its tables, not a dict of all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tools.labels import Ref

log = logging.getLogger("clipdedup")

EMBEDDED, EXACT_COPY, FAILED = "embedded", "exact_copy", "failed"


@dataclasses.dataclass(frozen=True)
class Run:
    """What a published run folder says about itself."""

    folder: str
    summary: dict
    embeddings_files: list[str]

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or os.path.basename(self.folder))

    @property
    def mined(self) -> bool:
        return "mine" in self.summary.get("stages", [])

    @property
    def duplicate_threshold(self) -> float | None:
        return self.summary.get("duplicate_threshold")

    @property
    def near_duplicate_threshold(self) -> float | None:
        return self.summary.get("near_duplicate_threshold")

    @property
    def group_threshold(self) -> float | None:
        return self.summary.get("groups", {}).get("group_threshold")

    @property
    def mining_threshold(self) -> float | None:
        """The lowest score the pair tables hold (pairs below it were never kept)."""
        return self.summary.get("mining", {}).get("threshold", self.near_duplicate_threshold)

    @functools.cached_property
    def model(self) -> str:
        """The run's model; for a `mine`-only run, the one its embeddings table names."""
        if self.summary.get("model"):
            return str(self.summary["model"])
        from transforms.parquet_open import open_parquet

        parquet = open_parquet(self.embeddings_files[0])
        if "model" in parquet.schema_arrow.names and parquet.metadata.num_rows:
            column = parquet.read_row_group(0, columns=["model"]).column("model")
            if len(column):
                return f"{column[0].as_py()} (from the embeddings table)"
        return "unknown (the embeddings table names no model)"

    @property
    def is_stand_in(self) -> bool:
        return bool(self.summary.get("model_is_stand_in"))

    def table_files(self, name: str) -> list[str]:
        """The Parquet files of table `name`: `<name>.parquet`, else `<name>/*.parquet`."""
        from apache_beam.io.filesystems import FileSystems

        from pipelines.run_folder import part_files

        single = FileSystems.join(self.folder, f"{name}.parquet")
        if FileSystems.exists(single):
            return [single]
        return part_files(FileSystems.join(self.folder, name))

    def exact_duplicates_files(self) -> list[str]:
        """The run's byte-copy table; a `mine`-only run's is beside the table it mined."""
        own = self.table_files("exact_duplicates")
        if own or "embeddings_source" not in self.summary:
            return own
        from pipelines.jobs import _sibling_exact_duplicates

        return _sibling_exact_duplicates(self.summary["embeddings_source"])


def open_run(folder: str) -> Run:
    """The run published at `folder`.

    Raises:
        FileNotFoundError: `folder` is not a published run (no `_SUCCESS`).
        ValueError: the run has no embeddings to score pairs with.
    """
    from apache_beam.io.filesystems import FileSystems

    from pipelines.jobs import _as_pattern
    from pipelines.run_folder import part_files
    from transforms.mine.transform import match_files

    folder = folder.rstrip("/")
    if not FileSystems.exists(FileSystems.join(folder, "_SUCCESS")):
        raise FileNotFoundError(f"{folder}: not a published run folder (no _SUCCESS)")
    with FileSystems.open(FileSystems.join(folder, "summary.json")) as f:
        summary = json.loads(f.read())
    files = part_files(FileSystems.join(folder, "embeddings"))
    if not files and summary.get("embeddings_source"):
        files = match_files(_as_pattern(summary["embeddings_source"]))
    if not files:
        raise ValueError(f"{folder}: no embeddings table (neither embeddings/ nor the "
                         "table a mine-only run names in summary.json)")
    return Run(folder, summary, files)


def _columns(path: str, wanted: list[str]) -> list[str]:
    from transforms.parquet_open import parquet_schema

    names = parquet_schema(path).names
    return [c for c in wanted if c in names]


def _read(path: str, columns: list[str]) -> pa.Table:
    from transforms.parquet_open import open_parquet

    return open_parquet(path).read(columns=columns)


def _strings(table: pa.Table, column: str) -> pa.ChunkedArray:
    if column in table.column_names:
        return pc.cast(table.column(column), pa.string())
    return pa.chunked_array([pa.nulls(len(table), pa.string())])


RECORD_SCHEMA = pa.schema([("record_id", pa.string()), ("source_uri", pa.string()),
                           ("key", pa.string()), ("rep", pa.string()), ("status", pa.string())])


def records_matching(run: Run, strings: set[str], ids_only: bool = False) -> pa.Table:
    """Every record of the run whose record_id, key or source_uri is one of `strings`
    (`ids_only`: whose record_id is): RECORD_SCHEMA, with `rep` the embedded record
    whose vector it has (itself; a byte copy's original; null when it failed) and
    `status` embedded / exact_copy / failed:<stage>:<reason>.
    """
    wanted = pa.array(sorted(strings), pa.string())
    parts = []

    def keep(table: pa.Table, id_col: str, uri_col: str, key_col: str) -> pa.Table:
        mask = pc.is_in(_strings(table, id_col), value_set=wanted)
        if not ids_only:
            for col in (uri_col, key_col):
                mask = pc.or_(mask, pc.is_in(_strings(table, col), value_set=wanted))
        return table.filter(pc.fill_null(mask, False))

    for path in run.embeddings_files:
        t = keep(_read(path, _columns(path, ["record_id", "source_uri", "key"])),
                 "record_id", "source_uri", "key")
        ids = _strings(t, "record_id")
        parts.append(pa.table([ids, _strings(t, "source_uri"), _strings(t, "key"), ids,
                               pa.array([EMBEDDED] * len(t), pa.string())], schema=RECORD_SCHEMA))
    for path in run.exact_duplicates_files():
        t = keep(_read(path, ["record_id_a", "record_id_b", "source_uri_b", "key_b"]),
                 "record_id_b", "source_uri_b", "key_b")
        parts.append(pa.table([_strings(t, "record_id_b"), _strings(t, "source_uri_b"),
                               _strings(t, "key_b"), _strings(t, "record_id_a"),
                               pa.array([EXACT_COPY] * len(t), pa.string())],
                              schema=RECORD_SCHEMA))
    for path in run.table_files("errors"):
        t = keep(_read(path, ["record_id", "source_uri", "key", "stage", "reason"]),
                 "record_id", "source_uri", "key")
        t = t.filter(pc.is_valid(t.column("record_id")))  # a whole-file failure names no record
        status = [f"{FAILED}:{s}:{r}" for s, r in zip(t.column("stage").to_pylist(),
                                                       t.column("reason").to_pylist())]
        parts.append(pa.table([_strings(t, "record_id"), _strings(t, "source_uri"),
                               _strings(t, "key"), pa.nulls(len(t), pa.string()),
                               pa.array(status, pa.string())], schema=RECORD_SCHEMA))
    return pa.concat_tables(parts) if parts else RECORD_SCHEMA.empty_table()


class Resolver:
    """Label references -> the run's records (`records_matching` rows).

    A reference is resolved in the order the labels file documents: record_id,
    then source_uri and/or key, then free text as a record_id, a key, or a path.
    A name that fits several records (a key repeated across shards, the path of
    a tar shard) is ambiguous and resolves to nothing: guessing would score a
    pair the labeller did not look at.
    """

    def __init__(self, records: pa.Table):
        self.rows = records.to_pylist()
        self.by: dict[str, dict[str, list[dict]]] = {"record_id": {}, "source_uri": {}, "key": {}}
        for row in self.rows:
            for col, index in self.by.items():
                if row[col] is not None:
                    index.setdefault(row[col], []).append(row)

    def _uri_variants(self, value: str) -> list[str]:
        return [value] if "://" in value else [value, os.path.abspath(value)]

    def _unique(self, found: list[dict], what: str) -> tuple[dict | None, str]:
        ids = {r["record_id"] for r in found}
        if not ids:
            return None, "not_in_run"
        if len(ids) > 1:
            return None, f"ambiguous: {what} names {len(ids)} records"
        return found[0], ""

    def resolve(self, ref: Ref) -> tuple[dict | None, str]:
        """(the record, "") or (None, why not: not_in_run / ambiguous: ... / failed:...)."""
        if ref.record_id:
            record, why = self._unique(self.by["record_id"].get(ref.record_id, []), "record_id")
        elif ref.source_uri or ref.key:
            found = None
            if ref.source_uri:
                found = [r for v in self._uri_variants(ref.source_uri)
                         for r in self.by["source_uri"].get(v, [])]
            if ref.key:
                by_key = self.by["key"].get(ref.key, [])
                found = by_key if found is None else [r for r in found if r in by_key]
            record, why = self._unique(found, "source_uri/key")
        else:
            record, why = None, "not_in_run"
            for col, values in (("record_id", [ref.text]), ("key", [ref.text]),
                                ("source_uri", self._uri_variants(ref.text))):
                found = [r for v in values for r in self.by[col].get(v, [])]
                if found:
                    record, why = self._unique(found, col)
                    break
        if record is not None and record["rep"] is None:
            return None, record["status"]
        return record, why


class Vectors:
    """Unit vectors of a few embedded records, and the whole run to search them against."""

    def __init__(self, run: Run):
        from tools.query import RunIndex

        self.index = RunIndex(run.folder, files=run.embeddings_files)
        self._ids = pa.array(self.index.ids, pa.string())

    def rows(self, record_ids: list[str]) -> np.ndarray:
        """Row numbers in the index of `record_ids` (each must be embedded)."""
        rows = pc.index_in(pa.array(record_ids, pa.string()), value_set=self._ids)
        if rows.null_count:
            missing = [r for r, i in zip(record_ids, rows.to_pylist()) if i is None][:3]
            raise ValueError(f"{missing}: in the run's tables but not in its embeddings")
        return rows.to_numpy(zero_copy_only=False).astype(np.int64)

    def scores(self, a: list[str], b: list[str]) -> np.ndarray:
        """Cosine of each pair (a[i], b[i]) of embedded records, as the miner scores it."""
        va, vb = self.index.vectors[self.rows(a)], self.index.vectors[self.rows(b)]
        return np.einsum("ij,ij->i", va, vb).astype(np.float32)


def pairs_among(run: Run, table: str, ids: set[str]) -> set[tuple[str, str]]:
    """The (a, b) rows of pair table `table` (a < b) whose two records are both in `ids`."""
    wanted = pa.array(sorted(ids), pa.string())
    found = set()
    for path in run.table_files(table):
        t = _read(path, ["record_id_a", "record_id_b"])
        t = t.filter(pc.and_(pc.is_in(t.column("record_id_a"), value_set=wanted),
                             pc.is_in(t.column("record_id_b"), value_set=wanted)))
        found.update(zip(t.column("record_id_a").to_pylist(), t.column("record_id_b").to_pylist()))
    return found


def groups_of(run: Run, ids: set[str]) -> dict[str, int]:
    """The manifest group of each of `ids` that is in a group of two or more."""
    wanted = pa.array(sorted(ids), pa.string())
    groups = {}
    for path in run.table_files("groups"):
        t = _read(path, ["record_id", "group_id"])
        t = t.filter(pc.is_in(t.column("record_id"), value_set=wanted))
        groups.update(zip(t.column("record_id").to_pylist(), t.column("group_id").to_pylist()))
    return groups
