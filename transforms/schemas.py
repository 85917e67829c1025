"""Arrow schemas of every table clipdedup writes.

The schemas are the contract between stages (STYLE.md #7, #8): the embed stage
writes `embeddings_schema(dim)`, the mine stage reads it, and every table a run
publishes is written with one of the constants below, never inferred from the
first record. All tables are plain Parquet that pandas, DuckDB and Hugging Face
`datasets` read as-is.
"""

import pyarrow as pa

#: Columns of the embeddings table, in order; `embedding` is appended per model.
EMBEDDING_METADATA_FIELDS = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("file_size", pa.int64(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
]


#: The image's 64-bit perceptual hash (`transforms.phash`), its bits read as
#: a signed integer; null only where the decoder gave none. Tables written
#: before this column existed, and tables made elsewhere, have no `phash`:
#: mining reads them as before and finds no phash pairs.
PHASH_FIELD = pa.field("phash", pa.int64())


def embeddings_schema(dim: int, phash: bool = False) -> pa.Schema:
    """Schema of the embeddings table for vectors of `dim` float32 values.

    The embed stage writes it with `phash=True` (the hash column last);
    without, it is the schema of tables written before the column existed,
    which the mine stage still reads.
    """
    return pa.schema(
        EMBEDDING_METADATA_FIELDS
        + [pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False)]
        + ([PHASH_FIELD] if phash else [])
    )


#: `duplicates` and `near_duplicates`: one row per unordered pair, a < b.
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("record_id_a", pa.string(), nullable=False),
        pa.field("record_id_b", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
)

#: `phash_pairs`: pairs of records whose perceptual hashes differ in at most
#: `phash_max_distance` bits, one row per unordered pair (a < b). `score` is
#: the cosine of their two embeddings, computed for every such pair;
#: `signal` is `both` where that score also reaches near_duplicate_threshold
#: (the pair is in duplicates / near_duplicates too), else `phash`.
PHASH_PAIRS_SCHEMA = pa.schema(
    [
        pa.field("record_id_a", pa.string(), nullable=False),
        pa.field("record_id_b", pa.string(), nullable=False),
        pa.field("hamming", pa.int32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("signal", pa.string(), nullable=False),  # phash / both
    ]
)

#: `exact_duplicates`: each byte copy (`b`) paired with the smallest record_id
#: of its sha256 group (`a`; a star, so a group of k copies gives k - 1 rows),
#: with where each of the two was found: copies are not embedded, so this is
#: the only table that locates them.
EXACT_DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("record_id_a", pa.string(), nullable=False),
        pa.field("record_id_b", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("source_uri_a", pa.string(), nullable=False),
        pa.field("key_a", pa.string(), nullable=False),
        pa.field("source_uri_b", pa.string(), nullable=False),
        pa.field("key_b", pa.string(), nullable=False),
    ]
)

#: `errors`: one row per record (or whole shard) that could not be used.
ERRORS_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string()),  # null when a whole shard failed
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("key", pa.string()),
        pa.field("stage", pa.string(), nullable=False),  # read / decode / embed
        pa.field("reason", pa.string(), nullable=False),  # stable reason code
        pa.field("message", pa.string(), nullable=False),
    ]
)

#: `shards`: one status row per input file (tar shard, Parquet file, image file).
SHARDS_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("input_kind", pa.string(), nullable=False),  # tar / parquet / image
        pa.field("records_read", pa.int64(), nullable=False),
        pa.field("images_found", pa.int64(), nullable=False),
        pa.field("errors", pa.int64(), nullable=False),
        pa.field("ended_cleanly", pa.bool_(), nullable=False),
        # The file as listed (Beam's FileMetadata): an incremental run reads a file
        # again only when its size or modification time differs (null: unknown).
        pa.field("file_size", pa.int64()),
        pa.field("last_modified", pa.float64()),
    ]
)

# Where a manifest row's record was found. Null only when the mined table
# (one made elsewhere) has no such column.
_LOCATION = [pa.field("source_uri", pa.string()), pa.field("key", pa.string())]

#: `groups`: one row per record in a group of two or more (keeper included,
#: byte copies included). Every member is within the grouping threshold of its
#: keeper (no chaining); `component_id` is its connected component of the
#: duplicate graph, which may hold several groups.
GROUPS_SCHEMA = pa.schema(
    [pa.field("record_id", pa.string(), nullable=False)] + _LOCATION + [
        pa.field("group_id", pa.int64(), nullable=False),
        pa.field("keeper_id", pa.string(), nullable=False),
        pa.field("score_to_keeper", pa.float32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # keeper / exact_copy / duplicate / near_duplicate
        pa.field("component_id", pa.int64(), nullable=False),
    ]
)

#: `keep`: the training manifest; every record kept (`reason`: unique / keeper).
KEEP_SCHEMA = pa.schema(
    [pa.field("record_id", pa.string(), nullable=False)] + _LOCATION + [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("keeper_id", pa.string(), nullable=False),  # itself
    ]
)

#: `drop`: every record left out, with the reason and the record kept instead.
DROP_SCHEMA = pa.schema(
    [pa.field("record_id", pa.string(), nullable=False)] + _LOCATION + [
        pa.field("reason", pa.string(), nullable=False),  # exact_copy / duplicate / near_duplicate
        pa.field("keeper_id", pa.string(), nullable=False),
        pa.field("keeper_source_uri", pa.string()),
        pa.field("keeper_key", pa.string()),
    ]
)

#: `skipped`: one row per path an input pattern found but the run did not read.
SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # not_an_input / unsupported_format / ...
        pa.field("message", pa.string(), nullable=False),
    ]
)

#: Record ids alone: the ids an incremental night hands from its embed job to its mine job.
RECORD_IDS_SCHEMA = pa.schema([pa.field("record_id", pa.string(), nullable=False)])

#: `changes`: one row per record whose status differs between two runs (`clipdedup
#: diff`, and a run with `--previous`). `status_*`: kept / dropped / error, null
#: where the record is not in that run; `change`: new / removed / kept_to_dropped /
#: dropped_to_kept / keeper_changed / now_failing / no_longer_failing.
CHANGES_SCHEMA = pa.schema(
    [pa.field("record_id", pa.string(), nullable=False)] + _LOCATION + [
        pa.field("change", pa.string(), nullable=False),
        pa.field("status_before", pa.string()),
        pa.field("status_after", pa.string()),
        pa.field("reason_before", pa.string()),  # unique / keeper / exact_copy / ... / error reason
        pa.field("reason_after", pa.string()),
        pa.field("keeper_before", pa.string()),
        pa.field("keeper_after", pa.string()),
    ]
)

#: `centroids` (approximate mining only): the partitions' unit-norm centroids, one
#: row per partition; the next night assigns its new records to them.
CENTROIDS_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("centroid", pa.list_(pa.float32()), nullable=False),
    ]
)

#: `partitions` (approximate mining only): each mined record's `nprobe` nearest
#: partitions, nearest (its own) first.
PARTITIONS_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("probes", pa.list_(pa.int32()), nullable=False),
        # the record's score against each of its probes: runs before 2026-12-06 lack it
        pa.field("scores", pa.list_(pa.float32()), nullable=True),
    ]
)
