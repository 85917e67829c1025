"""Stage 2 as a Beam graph: embeddings table -> duplicate and near-duplicate tables.

    Create(patterns) -> MinePairs -> WriteDuplicates / WriteNearDuplicates / WriteStats
    (mode distributed) ReadEmbeddings -> MineDistributed -> SplitPairs -> Write...,
                       MeasureRecall -> DistributedStats -> WriteStats

Reads the output of stage 1 or embeddings made elsewhere: any Parquet table
with an id column and a vector column (`config.id_column`,
`config.embedding_column`), given as one or several patterns mined together.
"""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import Config
from transforms import schemas
from transforms.mine import DUPLICATES, NEAR_DUPLICATES, STATS, MinePairs
from transforms.mining.distributed import MeasureRecall, MineDistributed
from transforms.write import PART_PREFIX, SUFFIX, table_dir

MINE_STATS = "_mine_stats"


def mining_options(config: Config) -> dict:
    """`mine_pairs` keywords from the config (local modes)."""
    return {"approximate_min_n": config.approximate_min_n, "nlist": config.nlist,
            "nprobe": config.nprobe, "recall_sample_size": config.recall_sample_size,
            "recall_target": config.recall_target, "seed": config.mining_seed}


def _id_vectors(table: pa.Table, id_column: str, embedding_column: str):
    """(id as a string, unit float32 vector) per row: MineDistributed wants unit vectors,
    and a table made elsewhere need not hold them."""
    from transforms.mine import ids_as_strings

    ids = ids_as_strings(table.column(id_column)).to_pylist()
    for rid, vector in zip(ids, table.column(embedding_column).to_pylist()):
        v = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(v))
        yield rid, (v / norm if norm > 0 else v)


def _is_duplicate(row: dict, n_partitions: int, threshold: float) -> int:
    return 0 if row["score"] >= threshold else 1


def _distributed_stats(recall: dict, duplicates: int, near_duplicates: int, embeddings: int,
                       config: Config) -> dict:
    low = recall["recall_sampled"] is not None and recall["recall_sampled"] < config.recall_target
    return dict(recall, mode="distributed", mode_requested="distributed", embeddings=embeddings,
                duplicates=duplicates, near_duplicates=near_duplicates,
                nlist=config.nlist, partition_size=config.partition_size,
                partitions_per_vector=config.partitions_per_vector,
                recall_target=config.recall_target, recall_below_target=bool(low))


def _build_distributed(p: beam.Pipeline, config: Config, patterns: list[str], staging: str):
    """Distributed mode: MineDistributed over the table, read in parallel."""
    columns = [config.id_column, config.embedding_column]
    reads = [p | (f"ReadEmbeddings{k or ''}") >> beam.io.ReadFromParquetBatched(
        pattern, columns=columns,
        validate=False)  # the table need not exist when the graph is built
        for k, pattern in enumerate(patterns)]
    batches = reads[0] if len(reads) == 1 else reads | "AllEmbeddings" >> beam.Flatten()
    vectors = batches | "ToIdVector" >> beam.FlatMap(_id_vectors, *columns)
    pairs = vectors | "MineDistributed" >> MineDistributed(
        config.near_duplicate_threshold, nlist=config.nlist,
        partition_size=config.partition_size,
        partitions_per_vector=config.partitions_per_vector, block_size=config.block_size,
        seed=config.mining_seed)
    dup, near = pairs | "SplitPairs" >> beam.Partition(
        _is_duplicate, 2, threshold=config.duplicate_threshold)
    counts = {}
    for tag, label, rows in ((DUPLICATES, "Duplicates", dup), (NEAR_DUPLICATES, "NearDuplicates", near)):
        _ = rows | f"Write{label}" >> beam.io.WriteToParquet(
            FileSystems.join(table_dir(staging, tag), PART_PREFIX),
            schema=schemas.PAIRS_SCHEMA, file_name_suffix=SUFFIX, num_shards=1)
        counts[tag] = rows | f"Count{label}" >> beam.combiners.Count.Globally()
    n = vectors | "CountEmbeddings" >> beam.combiners.Count.Globally()
    recall = (vectors, pairs) | "MeasureRecall" >> MeasureRecall(
        config.near_duplicate_threshold, sample_size=config.recall_sample_size)
    return recall | "DistributedStats" >> beam.Map(
        _distributed_stats, duplicates=beam.pvalue.AsSingleton(counts[DUPLICATES]),
        near_duplicates=beam.pvalue.AsSingleton(counts[NEAR_DUPLICATES]),
        embeddings=beam.pvalue.AsSingleton(n), config=config)


def build_pipeline(config: Config, embeddings_pattern: str | list[str], staging: str,
                   options: PipelineOptions | None = None) -> beam.Pipeline:
    """The unrun mine pipeline writing its tables below `staging`.

    `embeddings_pattern`: one pattern or several, mined together as one table.
    """
    p = beam.Pipeline(options=options or PipelineOptions([]))
    patterns = ([embeddings_pattern] if isinstance(embeddings_pattern, str)
                else list(embeddings_pattern))
    if config.mode == "distributed":
        stats = _build_distributed(p, config, patterns, staging)
        _ = (stats
             | "StatsToJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WriteStats" >> beam.io.WriteToText(FileSystems.join(staging, MINE_STATS),
                                                   file_name_suffix=".json", num_shards=1,
                                                   shard_name_template=""))
        return p
    mined = (p
             | "EmbeddingsTable" >> beam.Create([tuple(patterns)])
             | "MinePairs" >> MinePairs(config.duplicate_threshold,
                                        config.near_duplicate_threshold,
                                        config.mode, config.block_size,
                                        mining_options(config), config.id_column,
                                        config.embedding_column))
    for tag, label in ((DUPLICATES, "WriteDuplicates"), (NEAR_DUPLICATES, "WriteNearDuplicates")):
        # num_shards=0: each bundle writes its own part in the step that mines it, so
        # tables stream to Parquet; a fixed shard count would shuffle (hold) them all.
        _ = mined[tag] | label >> beam.io.WriteToParquetBatched(
            FileSystems.join(table_dir(staging, tag), PART_PREFIX),
            schema=schemas.PAIRS_SCHEMA, file_name_suffix=SUFFIX, num_shards=0)
    _ = (mined[STATS]
         | "StatsToJson" >> beam.Map(json.dumps, sort_keys=True)
         | "WriteStats" >> beam.io.WriteToText(FileSystems.join(staging, MINE_STATS),
                                               file_name_suffix=".json", num_shards=1,
                                               shard_name_template=""))
    return p


def read_stats(staging: str) -> dict:
    with FileSystems.open(FileSystems.join(staging, MINE_STATS + ".json")) as f:
        return json.loads(f.read().decode() or "{}")
