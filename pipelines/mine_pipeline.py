"""Stage 2 as a Beam graph: embeddings table -> duplicate and near-duplicate tables.

    Create(patterns) -> MinePairs -> WriteDuplicates / WriteNearDuplicates / WriteStats
    (mode distributed) ReadEmbeddings -> MineDistributed -> SplitPairs -> Write...,
                       MeasureRecall -> DistributedStats -> WriteStats
    (incremental night, exact) MineNewAgainstAll + CarryPairs (the previous run's
                       pairs of old records) -> Write... / IncrementalStats -> WriteStats
    (incremental night, approximate) MineNewApproximate (the previous partitions,
                       new records through them, the old pairs) -> Write...
    (incremental night, distributed) ReadPreviousCentroids -> MineDistributed(new_ids)
                       + CarryPairs -> SplitPairs -> Write...
    (approximate, distributed) WriteCentroids, and (approximate) WritePartitions:
                       the partitions the next night reuses
    and, in both, the groups and the manifest on the same pairs:
    ReadRecords (ids + metadata, no vectors) -> CheckIdsUnique (before mining starts),
    ReadExactDuplicates, pairs -> BuildGroups -> WriteGroups / WriteKeep / WriteDrop /
    WriteGroupStats
    and, with phash_max_distance >= 0, the model-free signal beside them:
    MinePhashPairs -> WritePhashPairs / WritePhashStats

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
from transforms.mine import resolve_mode
from transforms.mine.distributed import MeasureRecall, MineDistributed
from transforms.mine.transform import (
    CENTROIDS,
    DUPLICATES,
    NEAR_DUPLICATES,
    PARTITIONS,
    STATS,
    MinePairs,
)
from transforms.write import PART_PREFIX, SUFFIX, table_dir

MINE_STATS = "_mine_stats"
GROUP_STATS = "_group_stats"
PHASH_STATS = "_phash_stats"
PHASH_PAIRS = "phash_pairs"
GROUPS, KEEP, DROP = "groups", "keep", "drop"
LINE = "line"  # the keep.txt / drop.txt line of a keep / drop row, until the parts are merged
MANIFEST_SCHEMAS = {GROUPS: schemas.GROUPS_SCHEMA,
                    KEEP: schemas.KEEP_SCHEMA.append(pa.field(LINE, pa.string(), nullable=False)),
                    DROP: schemas.DROP_SCHEMA.append(pa.field(LINE, pa.string(), nullable=False))}


def approximate_options(config: Config) -> dict:
    """`mine_approximate` keywords from the config."""
    return {"nlist": config.nlist, "nprobe": config.nprobe,
            "recall_sample_size": config.recall_sample_size,
            "recall_target": config.recall_target, "seed": config.mining_seed}


def mining_options(config: Config) -> dict:
    """`mine_pairs` keywords from the config (local modes)."""
    return dict(approximate_options(config), approximate_min_n=config.approximate_min_n)


def _id_vectors(table: pa.Table, id_column: str, embedding_column: str):
    """(id as a string, unit float32 vector) per row: MineDistributed wants unit vectors,
    and a table made elsewhere need not hold them."""
    from transforms.mine.transform import chunk_vectors, ids_as_strings, normalise_rows

    if not table.num_rows:
        return
    ids = ids_as_strings(table.column(id_column)).combine_chunks()
    vectors = chunk_vectors(table.column(embedding_column).combine_chunks(),
                            "the embeddings table").copy()
    normalise_rows(vectors, ids)  # as the local modes load them
    yield from zip(ids.to_pylist(), vectors)


def _is_duplicate(row: dict, n_partitions: int, threshold: float) -> int:
    return 0 if row["score"] >= threshold else 1


def _distributed_stats(recall: dict, duplicates: int, near_duplicates: int, embeddings: int,
                       config: Config, centroids: np.ndarray, night: dict | None = None) -> dict:
    low = recall["recall_sampled"] is not None and recall["recall_sampled"] < config.recall_target
    stats = dict(recall, mode="distributed", mode_requested="distributed", embeddings=embeddings,
                 duplicates=duplicates, near_duplicates=near_duplicates,
                 nlist=int(centroids.shape[0]), partition_size=config.partition_size,
                 partitions_per_vector=config.partitions_per_vector,
                 recall_target=config.recall_target, recall_below_target=bool(low),
                 centroids_trained_n=embeddings)
    if night:  # the previous centroids, the new records' pairs and recall
        stats.update(night, incremental=True, centroids_reused=True,
                     recall_scope="new records")
    return stats


def _pair_row(row: dict) -> tuple:
    return row["record_id_a"], row["record_id_b"], row["score"]


def _night_counts(_, new: int, found: int, trained: int) -> dict:
    return {"embeddings_new": new, "pairs_new": found, "centroids_trained_n": trained}


def _build_distributed(p: beam.Pipeline, config: Config, patterns: list[str], staging: str,
                       incremental: dict | None = None):
    """Distributed mode: MineDistributed over the table, read in parallel. An incremental
    night reuses the previous centroids, mines only pairs with a new record and carries
    the previous pairs of old records."""
    from transforms.mine.distributed import NewRecords, TrainCentroids
    from transforms.mine.partition_tables import centroids_table, read_centroids

    columns = [config.id_column, config.embedding_column]
    reads = [p | (f"ReadEmbeddings{k or ''}") >> beam.io.ReadFromParquetBatched(
        pattern, columns=columns,
        validate=False)  # the table need not exist when the graph is built
        for k, pattern in enumerate(patterns)]
    batches = reads[0] if len(reads) == 1 else reads | "AllEmbeddings" >> beam.Flatten()
    vectors = batches | "ToIdVector" >> beam.FlatMap(_id_vectors, *columns)
    if incremental:
        centroids = (p
                     | "PreviousCentroidsPath" >> beam.Create(
                         [FileSystems.join(incremental["previous"], f"{CENTROIDS}.parquet")])
                     | "ReadPreviousCentroids" >> beam.Map(read_centroids))
    else:
        centroids = vectors | "TrainCentroids" >> TrainCentroids(
            nlist=config.nlist, partition_size=config.partition_size, seed=config.mining_seed)
    _ = (centroids
         | "CentroidsTable" >> beam.Map(centroids_table)
         | "WriteCentroids" >> beam.io.WriteToParquetBatched(
             FileSystems.join(table_dir(staging, CENTROIDS), PART_PREFIX),
             schema=schemas.CENTROIDS_SCHEMA, file_name_suffix=SUFFIX, num_shards=0))
    new_ids = incremental["new_ids"] if incremental else None
    pairs = vectors | "MineDistributed" >> MineDistributed(
        config.near_duplicate_threshold, partitions_per_vector=config.partitions_per_vector,
        block_size=config.block_size, centroids=centroids, new_ids=new_ids)
    recall_pool, all_pairs, side = vectors, pairs, {}
    if incremental:
        recall_pool = vectors | "NewRecords" >> NewRecords(new_ids)
        carried = _carried(p, config, incremental)
        carried_rows = ((carried[DUPLICATES], carried[NEAR_DUPLICATES])
                        | "CarriedTables" >> beam.Flatten()
                        | "CarriedRows" >> beam.FlatMap(lambda table: table.to_pylist()))
        all_pairs = (pairs, carried_rows) | "AllPairs" >> beam.Flatten()
        night = (p
                 | "NightStats" >> beam.Create([None])
                 | "NightCounts" >> beam.Map(
                     _night_counts,
                     new=beam.pvalue.AsSingleton(
                         recall_pool | "CountNew" >> beam.combiners.Count.Globally()),
                     found=beam.pvalue.AsSingleton(
                         pairs | "CountNewPairs" >> beam.combiners.Count.Globally()),
                     trained=incremental["trained_n"]))
        side = {"night": beam.pvalue.AsSingleton(night)}
    dup, near = all_pairs | "SplitPairs" >> beam.Partition(
        _is_duplicate, 2, threshold=config.duplicate_threshold)
    counts = {}
    for tag, label, rows in ((DUPLICATES, "Duplicates", dup), (NEAR_DUPLICATES, "NearDuplicates", near)):
        _ = rows | f"Write{label}" >> beam.io.WriteToParquet(
            FileSystems.join(table_dir(staging, tag), PART_PREFIX),
            schema=schemas.PAIRS_SCHEMA, file_name_suffix=SUFFIX, num_shards=1)
        counts[tag] = rows | f"Count{label}" >> beam.combiners.Count.Globally()
    n = vectors | "CountEmbeddings" >> beam.combiners.Count.Globally()
    recall = (vectors, pairs, recall_pool) | "MeasureRecall" >> MeasureRecall(
        config.near_duplicate_threshold, sample_size=config.recall_sample_size)
    pair_rows = all_pairs | "PairTuples" >> beam.Map(_pair_row)
    return pair_rows, recall | "DistributedStats" >> beam.Map(
        _distributed_stats, duplicates=beam.pvalue.AsSingleton(counts[DUPLICATES]),
        near_duplicates=beam.pvalue.AsSingleton(counts[NEAR_DUPLICATES]),
        embeddings=beam.pvalue.AsSingleton(n), config=config,
        centroids=beam.pvalue.AsSingleton(centroids), **side)


def _pair_tuples(table: pa.Table):
    """A pair table -> `(id_a, id_b, score)` per row, one record batch at a time."""
    for batch in table.to_batches():
        yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(),
                       batch.column(2).to_pylist())


def _exact_rows(path: str):
    """The rows of one exact_duplicates table, a row group at a time (older tables lack the
    location columns: those are None)."""
    from transforms.parquet_open import open_parquet

    pf = open_parquet(path)
    for group in range(pf.num_row_groups):
        yield from pf.read_row_group(group).to_pylist()


def _write_json(pcoll, label: str, staging: str, name: str) -> None:
    _ = (pcoll
         | f"{label}ToJson" >> beam.Map(json.dumps, sort_keys=True)
         | f"Write{label}" >> beam.io.WriteToText(FileSystems.join(staging, name),
                                                  file_name_suffix=".json", num_shards=1,
                                                  shard_name_template=""))


def _previous_keepers(p: beam.Pipeline, previous_keep: str):
    """The record ids of the previous run's keep table, read on the engine."""
    return (p
            | "ReadPreviousKeep" >> beam.io.ReadFromParquetBatched(
                previous_keep, columns=["record_id"], validate=False)
            | "PreviousKeepIds" >> beam.FlatMap(lambda t: t.column("record_id").to_pylist()))


def _build_groups(p: beam.Pipeline, config: Config, records, pairs, staging: str,
                  keeper_rule: str, exact_duplicates: list[str], n_records: int | None,
                  previous_keep: str | None = None) -> None:
    """BuildGroups on the mined pairs; groups / keep / drop part files and the stats JSON."""
    from transforms.manifest.build import STATS, BuildGroups

    exact = (p
             | "ExactDuplicatesTables" >> beam.Create(list(exact_duplicates))
             | "ReadExactDuplicates" >> beam.FlatMap(_exact_rows))
    inputs = {"records": records, "pairs": pairs, "exact_duplicates": exact}
    if previous_keep:  # keeper_policy stable
        inputs["previous_keepers"] = _previous_keepers(p, previous_keep)
    out = inputs | "BuildGroups" >> (
        BuildGroups(duplicate_threshold=config.duplicate_threshold,
                    near_duplicate_threshold=config.near_duplicate_threshold,
                    drop_near_duplicates=config.drop_near_duplicates, keeper_rule=keeper_rule,
                    components_on_one_worker=(n_records is not None and n_records
                                              <= config.components_one_worker_max_records)))
    for table, label in ((GROUPS, "WriteGroups"), (KEEP, "WriteKeep"), (DROP, "WriteDrop")):
        _ = out[table] | label >> beam.io.WriteToParquet(
            FileSystems.join(table_dir(staging, table), PART_PREFIX),
            schema=MANIFEST_SCHEMAS[table], file_name_suffix=SUFFIX)
    _write_json(out[STATS], "GroupStats", staging, GROUP_STATS)


def _build_phash_pairs(p: beam.Pipeline, config: Config, patterns: list[str], staging: str) -> None:
    """The phash_pairs part files and their stats JSON (every mining mode: one worker
    holds ids and hashes, not vectors)."""
    from transforms.mine.phash_pairs import PAIRS, STATS, MinePhashPairs

    out = (p
           | "PhashTable" >> beam.Create([tuple(patterns)])
           | "MinePhashPairs" >> MinePhashPairs(config.phash_max_distance,
                                                config.near_duplicate_threshold,
                                                config.id_column, config.embedding_column))
    _ = out[PAIRS] | "WritePhashPairs" >> beam.io.WriteToParquetBatched(
        FileSystems.join(table_dir(staging, PHASH_PAIRS), PART_PREFIX),
        schema=schemas.PHASH_PAIRS_SCHEMA, file_name_suffix=SUFFIX, num_shards=0)
    _write_json(out[STATS], "PhashStats", staging, PHASH_STATS)


def build_pipeline(config: Config, embeddings_pattern: str | list[str], staging: str,
                   options: PipelineOptions | None = None, *, keeper_rule: str | None = None,
                   exact_duplicates: list[str] | None = None,
                   n_records: int | None = None,
                   previous_keep: str | None = None,
                   incremental: dict[str, str] | None = None) -> beam.Pipeline:
    """The unrun mine pipeline writing its tables below `staging`.

    Args:
        embeddings_pattern: one pattern or several, mined together as one table.
        keeper_rule: the rule as resolved against the table's columns
            (`resolve_keeper_rule`); default `config.keeper_rule`.
        exact_duplicates: exact_duplicates tables whose byte copies join the manifest.
        n_records: rows of the embeddings table, when known: up to
            `config.components_one_worker_max_records`, connected components
            are one union-find combine; unknown or above, rounds on the workers.
        previous_keep: the previous run's keep table (`keeper_policy: stable`):
            the records it kept stay keepers while within the threshold.
        incremental: exact mode only: `previous` (a published run folder whose pairs
            are carried), `new_ids` and `not_carried` (patterns of the id tables the
            incremental embed job wrote); see `transforms.mine.incremental`.
    """
    from transforms.manifest.records import FindRepeatedIds, ReadRecords, check_ids_unique

    p = beam.Pipeline(options=options or PipelineOptions([]))
    patterns = ([embeddings_pattern] if isinstance(embeddings_pattern, str)
                else list(embeddings_pattern))
    rule = keeper_rule or config.keeper_rule
    if config.phash_max_distance >= 0:
        _build_phash_pairs(p, config, patterns, staging)
    records = (p
               | "EmbeddingsPatterns" >> beam.Create(patterns)
               | "ReadRecords" >> ReadRecords(config.id_column, rule))
    ids_checked = (records
                   | "FindRepeatedIds" >> FindRepeatedIds(config.id_column)
                   | "CheckIdsUnique" >> beam.Map(check_ids_unique))
    if config.mode == "distributed":
        pairs, stats = _build_distributed(p, config, patterns, staging, incremental)
        _write_json(stats, "Stats", staging, MINE_STATS)
        _build_groups(p, config, records, pairs, staging, rule, exact_duplicates or [],
                      n_records, previous_keep)
        return p
    table = (p
             | "EmbeddingsTable" >> beam.Create([tuple(patterns)])
             # mining starts once ids are known unique, so a repeated id fails in one line
             | "AfterIdsChecked" >> beam.Map(lambda table, ok: table,
                                             ok=beam.pvalue.AsSingleton(ids_checked)))
    if incremental:
        mined = _mine_incremental(p, config, table, incremental)
    else:
        mined = table | "MinePairs" >> MinePairs(config.duplicate_threshold,
                                                 config.near_duplicate_threshold,
                                                 config.mode, config.block_size,
                                                 mining_options(config), config.id_column,
                                                 config.embedding_column)
    tables = [(DUPLICATES, schemas.PAIRS_SCHEMA, "WriteDuplicates"),
              (NEAR_DUPLICATES, schemas.PAIRS_SCHEMA, "WriteNearDuplicates")]
    if resolve_mode(config.mode, n_records or 0, config.approximate_min_n) == "approximate":
        tables += [(CENTROIDS, schemas.CENTROIDS_SCHEMA, "WriteCentroids"),
                   (PARTITIONS, schemas.PARTITIONS_SCHEMA, "WritePartitions")]
    for tag, schema, label in tables:
        # num_shards=0: each bundle writes its own part in the step that mines it, so
        # tables stream to Parquet; a fixed shard count would shuffle (hold) them all.
        _ = mined[tag] | label >> beam.io.WriteToParquetBatched(
            FileSystems.join(table_dir(staging, tag), PART_PREFIX),
            schema=schema, file_name_suffix=SUFFIX, num_shards=0)
    _write_json(mined[STATS], "Stats", staging, MINE_STATS)
    pairs = ((mined[DUPLICATES], mined[NEAR_DUPLICATES])
             | "AllPairTables" >> beam.Flatten()
             | "PairTuples" >> beam.FlatMap(_pair_tuples))
    _build_groups(p, config, records, pairs, staging, rule, exact_duplicates or [],
                  n_records, previous_keep)
    return p


def _carried(p: beam.Pipeline, config: Config, incremental: dict):
    """{duplicates, near_duplicates}: the previous run's pairs of old records."""
    from transforms.mine.incremental import CarryPairs, previous_pair_tables

    return (p
            | "PreviousPairTables" >> beam.Create(previous_pair_tables(incremental["previous"]))
            | "CarryPairs" >> CarryPairs(incremental["not_carried"], config.duplicate_threshold,
                                         config.near_duplicate_threshold))


def _incremental_stats(new: dict, mode_requested: str) -> dict:
    """The new pairs' stats; the launcher adds the table totals (from the footers)."""
    exact = {} if new["mode"] == "approximate" else {"recall_sampled": 1.0, "recall_exact": True}
    return dict(new, mode_requested=mode_requested, incremental=True, **exact)


def _mine_incremental(p: beam.Pipeline, config: Config, table, incremental: dict):
    """The previous run's pairs of old records, plus new records mined against all."""
    from transforms.mine.incremental import MineNewAgainstAll

    if incremental["mode"] == "approximate":
        from transforms.mine.incremental_approximate import MineNewApproximate

        mined = table | "MineNewApproximate" >> MineNewApproximate(
            incremental["previous"], incremental["new_ids"], incremental["not_carried"],
            config.duplicate_threshold, config.near_duplicate_threshold,
            dict(approximate_options(config), nprobe=incremental["nprobe"]),
            incremental["trained_n"], incremental["trained_fit"],
            incremental.get("previous_recall_ok", True), config.block_size,
            config.id_column, config.embedding_column)
        out = {tag: mined[tag] for tag in (DUPLICATES, NEAR_DUPLICATES, STATS, CENTROIDS,
                                           PARTITIONS)}
    else:
        new = table | "MineNewAgainstAll" >> MineNewAgainstAll(
            incremental["new_ids"], config.duplicate_threshold, config.near_duplicate_threshold,
            config.block_size, config.id_column, config.embedding_column)
        carried = _carried(p, config, incremental)
        out = {STATS: new[STATS]}
        for tag, label in ((DUPLICATES, "Duplicates"), (NEAR_DUPLICATES, "NearDuplicates")):
            out[tag] = (new[tag], carried[tag]) | f"All{label}" >> beam.Flatten()
    out[STATS] = out[STATS] | "IncrementalStats" >> beam.Map(
        _incremental_stats, mode_requested=config.mode)
    return out


def read_stats(staging: str, name: str = MINE_STATS) -> dict:
    with FileSystems.open(FileSystems.join(staging, name + ".json")) as f:
        return json.loads(f.read().decode() or "{}")
