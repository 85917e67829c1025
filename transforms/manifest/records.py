"""Record ids and metadata from the embeddings files, with each record's keeper sort key.

`ReadRecords`: embeddings file paths -> `(record_id, Record)`, streaming one
row group at a time and never the vectors. Ids are read as strings
(`ids_as_strings`); each file contributes the metadata columns it has (others
are null, sizes 0 for the keeper rule). `keeper_sort_key` turns the keeper
rule into a tuple per record so that sorting a component's members gives the
order of `keeper_rank` (best keeper first).

`FindRepeatedIds`: records -> the one-line error for the smallest id found
twice (naming the files it is in), or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import total_ordering
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from transforms.manifest.keeper_rule import parse_keeper_rule
from transforms.mine.transform import EmbeddingsTableError, ids_as_strings, match_files
from transforms.parquet_open import open_parquet

# Used for keepers and manifests where a table has them; only the id and the
# vector column are required (tables made elsewhere may have nothing else).
METADATA_TYPES = {"source_uri": pa.string(), "key": pa.string(), "width": pa.int64(),
                  "height": pa.int64(), "file_size": pa.int64()}


class Record(NamedTuple):
    source_uri: str | None
    key: str | None
    sort_key: tuple
    path: str


@total_ordering
class Descending:
    """A string that sorts in reverse (for a `-record_id` keeper rule)."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __eq__(self, other):
        return self.value == other.value

    def __lt__(self, other):
        return self.value > other.value

    def __reduce__(self):
        return Descending, (self.value,)


def keeper_sort_key(terms: list[tuple[str, bool]], record_id: str, width: int | None,
                    height: int | None, file_size: int | None) -> tuple:
    """The record's place under the keeper rule as a tuple (smaller = better keeper)."""
    sizes = {"width": width or 0, "height": height or 0, "file_size": file_size or 0}
    key = []
    for name, desc in terms:
        if name == "record_id":
            key.append(Descending(record_id) if desc else record_id)
            continue
        value = sizes["width"] * sizes["height"] if name == "area" else sizes[name]
        key.append(-value if desc else value)
    return tuple(key)


def _read_file(path: str, id_column: str, rule: str) -> Iterator[tuple[str, Record]]:
    terms = parse_keeper_rule(rule)
    pf = open_parquet(path)
    present = [c for c in METADATA_TYPES if c in pf.schema_arrow.names and c != id_column]
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group, columns=[id_column] + present)
        columns = {}
        for name, typ in METADATA_TYPES.items():
            try:
                columns[name] = (table.column(name).cast(typ).to_pylist() if name in present
                                 else [None] * table.num_rows)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise EmbeddingsTableError(f"{path}: column {name} is "
                                           f"{table.schema.field(name).type}, expected "
                                           f"{typ}") from None
        ids = ids_as_strings(table.column(id_column)).to_pylist()
        for k, rid in enumerate(ids):
            yield rid, Record(columns["source_uri"][k], columns["key"][k],
                              keeper_sort_key(terms, rid, columns["width"][k],
                                              columns["height"][k], columns["file_size"][k]),
                              path)


class ReadRecords(beam.PTransform):
    """Embeddings file patterns -> `(record_id, Record)` (ids as strings, no vectors).

    Each file is listed once however many patterns match it, as `match_files` does.
    """

    def __init__(self, id_column: str, keeper_rule: str):
        super().__init__()
        self._id_column = id_column
        self._rule = keeper_rule

    def expand(self, patterns: beam.PCollection[str]) -> beam.PCollection[tuple[str, Record]]:
        return (patterns
                | "MatchFiles" >> beam.FlatMap(match_files)
                | "EachFileOnce" >> beam.Distinct()
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadIdsAndMetadata" >> beam.FlatMap(_read_file, self._id_column, self._rule))


def _repeated(element) -> Iterator[tuple[str, list[str]]]:
    rid, paths = element
    paths = list(paths)
    if len(paths) > 1:
        yield rid, sorted(paths)


def _smallest(found):
    return min((f for f in found if f is not None), default=None)


def check_ids_unique(message: str | None) -> bool:
    """Raises EmbeddingsTableError with `message` (from FindRepeatedIds) if there is one."""
    if message:
        raise EmbeddingsTableError(message)
    return True


def repeated_id_message(found: tuple[str, list[str]] | None, id_column: str) -> str | None:
    if found is None:
        return None
    rid, paths = found
    where = f"in {paths[0]}" if paths[0] == paths[1] else f"in {paths[0]} and {paths[1]}"
    return (f"id {rid!r} ({id_column}) appears twice, {where}; "
            "ids must be unique across all embeddings inputs")


class FindRepeatedIds(beam.PTransform):
    """`(record_id, Record)` -> one element: the error for the smallest repeated id, or None."""

    def __init__(self, id_column: str):
        super().__init__()
        self._id_column = id_column

    def expand(self, records):
        return (records
                | "PathOfId" >> beam.MapTuple(lambda rid, rec: (rid, rec.path))
                | "ById" >> beam.GroupByKey()
                | "Repeated" >> beam.FlatMap(_repeated)
                | "Smallest" >> beam.CombineGlobally(_smallest)
                | "Message" >> beam.Map(repeated_id_message, self._id_column))
