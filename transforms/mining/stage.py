"""The mine stage's single-machine body: embeddings table in, run-folder tables out.

    records, x = read_embeddings("run/embeddings")          # one copy of the vectors
    out = mine_records(records, x, exact_duplicates, config)  # pairs, groups, manifest
    write_outputs(out, tmp_run_dir)                         # caller publishes (_SUCCESS)

`read_records(files)` reads ids and the metadata columns a table has, without
the vectors, into one table (the CLI's mine job does this on the engine
instead: `transforms.manifest.records.ReadRecords`).

For `mode: distributed`, pairs come from the Beam transform `MineDistributed`;
turn its rows back into index pairs with `pairs_from_table` and call
`finish(records, pairs, exact_duplicates, config, stats)` for groups and the
manifest (those need only ids, sizes and pairs, never the vectors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.mine import EmbeddingsTableError, check_schema, ids_as_strings
from transforms.mining import mine_pairs
from transforms.mining.groups import build_groups, pair_tables, resolve_keeper_rule
from transforms.mining.manifest_text import text
from transforms.mining.pairs import Pairs, canonical_pairs
from transforms.parquet_open import open_parquet

# Used for keepers and manifests where a table has them; only the id and the
# vector column are required (tables made elsewhere may have nothing else).
METADATA_TYPES = {"source_uri": pa.string(), "key": pa.string(), "width": pa.int64(),
                  "height": pa.int64(), "file_size": pa.int64()}
NORM_TOLERANCE = 1e-3


@dataclass
class MineOutputs:
    duplicates: pa.Table
    near_duplicates: pa.Table
    groups: pa.Table
    keep: pa.Table
    drop: pa.Table
    keep_lines: list[str]
    drop_lines: list[str]
    stats: dict[str, Any]


def read_records(files: list[str], id_column: str = "record_id",
                 embedding_column: str = "embedding") -> pa.Table:
    """`record_id` (as strings) plus the metadata columns present, from each file.

    Every file is checked for an id and a vector column; a metadata column
    some files lack is null there. Raises EmbeddingsTableError (one line) on a
    missing column, a column of the wrong type, or an id found twice (naming
    the files, also when the id is in two different inputs).
    """
    parts, origin, seen = [], [], set()
    for path in files:
        pf = open_parquet(path)
        check_schema(path, pf.schema_arrow, id_column, embedding_column)
        present = [c for c in METADATA_TYPES if c in pf.schema_arrow.names and c != id_column]
        table = pf.read(columns=[id_column] + present)
        seen.update(present)
        columns = {"record_id": ids_as_strings(table.column(id_column))}
        for name, typ in METADATA_TYPES.items():
            try:
                columns[name] = (table.column(name).cast(typ) if name in present
                                 else pa.nulls(table.num_rows, typ))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise EmbeddingsTableError(f"{path}: column {name} is "
                                           f"{table.schema.field(name).type}, expected {typ}") from None
        parts.append(pa.table(columns))
        origin += [path] * table.num_rows
    schema = pa.schema([("record_id", pa.string())] + list(METADATA_TYPES.items()))
    records = pa.concat_tables(parts) if parts else schema.empty_table()
    ids = records.column("record_id").to_pylist()
    if len(set(ids)) != len(ids):
        first = {}
        for rid, path in zip(ids, origin):
            if rid in first:
                where = (f"in {path}" if first[rid] == path else f"in {first[rid]} and {path}")
                raise EmbeddingsTableError(f"id {rid!r} ({id_column}) appears twice, {where}; "
                                           "ids must be unique across all embeddings inputs")
            first[rid] = path
    # Only the columns some file had: the keeper rule is resolved against these.
    return records.select(["record_id"] + [c for c in METADATA_TYPES if c in seen])


def read_embeddings(path: str) -> tuple[pa.Table, np.ndarray]:
    """Metadata table and `[N, d]` float32 matrix of an embeddings Parquet file or folder.

    Batches are copied straight into one preallocated matrix, so peak memory
    is one copy of the vectors (2 GB at 1M x 512), not two. Files whose names
    start with `_` or `.` are skipped (pyarrow's rule). Raises ValueError on
    vectors that are not L2-normalised (the table's contract).
    """
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")
    field = dataset.schema.field("embedding")
    dim = field.type.list_size
    if dim is None or dim <= 0:
        raise ValueError(f"{path}: embedding must be fixed_size_list<float32>, got {field.type}")
    n = dataset.count_rows()
    x = np.empty((n, dim), dtype=np.float32)
    meta = []
    row = 0
    columns = ["record_id"] + [c for c in METADATA_TYPES if c in dataset.schema.names]
    for batch in dataset.to_batches(columns=columns + ["embedding"]):
        emb = batch.column("embedding")
        values = emb.values.to_numpy(zero_copy_only=False)[emb.offset * dim : (emb.offset + len(emb)) * dim]
        x[row : row + len(emb)] = values.reshape(-1, dim)
        row += len(emb)
        meta.append(batch.select(columns))
    records = pa.Table.from_batches(meta, schema=meta[0].schema) if meta else pa.table(
        {c: [] for c in columns})
    norms = np.linalg.norm(x, axis=1) if n else np.empty(0)
    bad = int((np.abs(norms - 1.0) > NORM_TOLERANCE).sum())
    if bad:
        raise ValueError(f"{path}: {bad} of {n} embeddings are not L2-normalised")
    return records, x


def pairs_from_table(table: pa.Table, records: pa.Table) -> Pairs:
    """Index pairs (into `records`) from a `{record_id_a, record_id_b, score}` table."""
    index = {rid: k for k, rid in enumerate(records.column("record_id").to_pylist())}
    i = np.array([index[r] for r in table.column("record_id_a").to_pylist()], dtype=np.int64)
    j = np.array([index[r] for r in table.column("record_id_b").to_pylist()], dtype=np.int64)
    s = table.column("score").to_numpy().astype(np.float32)
    return canonical_pairs(i, j, s, max(records.num_rows, 1))


def finish(records: pa.Table, pairs: Pairs, exact_duplicates: pa.Table | None, config: Any,
           stats: dict[str, Any]) -> MineOutputs:
    """Pair tables, groups and the manifest from mined pairs; stats merged for summary.json.

    The default keeper rule leaves out the size fields `records` lacks (see
    `resolve_keeper_rule`); the rule applied is in the stats.
    """
    rule, left_out = resolve_keeper_rule(config.keeper_rule, records.column_names)
    dup, near = pair_tables(pairs, np.asarray(records.column("record_id").to_pylist(), dtype=object),
                            config.duplicate_threshold, config.near_duplicate_threshold)
    res = build_groups(records, pairs, exact_duplicates,
                       duplicate_threshold=config.duplicate_threshold,
                       near_duplicate_threshold=config.near_duplicate_threshold,
                       drop_near_duplicates=config.drop_near_duplicates,
                       keeper_rule=rule)
    stats = dict(stats, duplicates=dup.num_rows, near_duplicates=near.num_rows)
    res.stats["keeper_fields_left_out"] = left_out
    return MineOutputs(dup, near, res.groups, res.keep, res.drop, res.keep_lines, res.drop_lines,
                       {"mining": stats, "groups": res.stats})


def mine_records(records: pa.Table, x: np.ndarray, exact_duplicates: pa.Table | None,
                 config: Any) -> MineOutputs:
    """Mines `x` (rows of `records`) locally per `config.mode` (auto/exact/approximate)."""
    pairs, stats = mine_pairs(
        x, config.near_duplicate_threshold, mode=config.mode, block_size=config.block_size,
        approximate_min_n=config.approximate_min_n, nlist=config.nlist, nprobe=config.nprobe,
        recall_sample_size=config.recall_sample_size, recall_target=config.recall_target,
        seed=config.mining_seed)
    return finish(records, pairs, exact_duplicates, config, stats)


def write_outputs(out: MineOutputs, folder: str) -> None:
    """Writes the pair tables, groups, keep/drop manifest and keep.txt / drop.txt into `folder`."""
    os.makedirs(folder, exist_ok=True)
    for name, table in [("duplicates", out.duplicates), ("near_duplicates", out.near_duplicates),
                        ("groups", out.groups), ("keep", out.keep), ("drop", out.drop)]:
        pq.write_table(table, os.path.join(folder, f"{name}.parquet"))
    for name, lines in (("keep", out.keep_lines), ("drop", out.drop_lines)):
        with open(os.path.join(folder, f"{name}.txt"), "wb") as f:
            f.write(text(lines))
