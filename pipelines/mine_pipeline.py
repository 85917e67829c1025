"""Stage 2 as a Beam graph: embeddings table -> duplicate and near-duplicate tables.

    Create(pattern) -> MinePairs -> WriteDuplicates / WriteNearDuplicates / WriteStats
    (mode distributed) ReadEmbeddings -> MineDistributed -> SplitPairs -> Write...,
                       MeasureRecall -> DistributedStats -> WriteStats

Reads any Parquet table of `schemas.embeddings_schema`, so it runs on the
output of stage 1 or on embeddings made elsewhere.
"""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
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


def _to_id_vector(row: dict):
    return row["record_id"], np.asarray(row["embedding"], dtype=np.float32)


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


def _build_distributed(p: beam.Pipeline, config: Config, embeddings_pattern: str, staging: str):
    """Distributed mode: MineDistributed over the table, read in parallel."""
    vectors = (p
               | "ReadEmbeddings" >> beam.io.ReadFromParquet(
                   embeddings_pattern, columns=["record_id", "embedding"],
                   validate=False)  # the table need not exist when the graph is built
               | "ToIdVector" >> beam.Map(_to_id_vector))
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


def build_pipeline(config: Config, embeddings_pattern: str, staging: str,
                   options: PipelineOptions | None = None) -> beam.Pipeline:
    """The unrun mine pipeline writing its tables below `staging`."""
    p = beam.Pipeline(options=options or PipelineOptions([]))
    if config.mode == "distributed":
        stats = _build_distributed(p, config, embeddings_pattern, staging)
        _ = (stats
             | "StatsToJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WriteStats" >> beam.io.WriteToText(FileSystems.join(staging, MINE_STATS),
                                                   file_name_suffix=".json", num_shards=1,
                                                   shard_name_template=""))
        return p
    mined = (p
             | "EmbeddingsTable" >> beam.Create([embeddings_pattern])
             | "MinePairs" >> MinePairs(config.duplicate_threshold,
                                        config.near_duplicate_threshold,
                                        config.mode, config.block_size,
                                        mining_options(config)))
    for tag, label in ((DUPLICATES, "WriteDuplicates"), (NEAR_DUPLICATES, "WriteNearDuplicates")):
        _ = mined[tag] | label >> beam.io.WriteToParquetBatched(
            FileSystems.join(table_dir(staging, tag), PART_PREFIX),
            schema=schemas.PAIRS_SCHEMA, file_name_suffix=SUFFIX, num_shards=1)
    _ = (mined[STATS]
         | "StatsToJson" >> beam.Map(json.dumps, sort_keys=True)
         | "WriteStats" >> beam.io.WriteToText(FileSystems.join(staging, MINE_STATS),
                                               file_name_suffix=".json", num_shards=1,
                                               shard_name_template=""))
    return p


def read_stats(staging: str) -> dict:
    with FileSystems.open(FileSystems.join(staging, MINE_STATS + ".json")) as f:
        return json.loads(f.read().decode() or "{}")
