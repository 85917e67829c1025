"""Stage 2 as a Beam graph: embeddings table -> duplicate and near-duplicate tables.

    Create(pattern) -> MinePairs -> WriteDuplicates / WriteNearDuplicates / WriteStats

Reads any Parquet table of `schemas.embeddings_schema`, so it runs on the
output of stage 1 or on embeddings made elsewhere.
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import Config
from transforms import schemas
from transforms.mine import DUPLICATES, NEAR_DUPLICATES, STATS, MinePairs
from transforms.write import PART_PREFIX, SUFFIX, table_dir

MINE_STATS = "_mine_stats"


def build_pipeline(config: Config, embeddings_pattern: str, staging: str,
                   options: PipelineOptions | None = None) -> beam.Pipeline:
    """The unrun mine pipeline writing its tables below `staging`."""
    p = beam.Pipeline(options=options or PipelineOptions([]))
    mined = (p
             | "EmbeddingsTable" >> beam.Create([embeddings_pattern])
             | "MinePairs" >> MinePairs(config.duplicate_threshold,
                                        config.near_duplicate_threshold,
                                        config.mode, config.block_size))
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
