"""Stage 1 as a Beam graph: image files -> embeddings, errors, shards, exact copies.

    MatchInputs -> IndexRecords (ids + sha256 only) -> FindByteCopies
                -> ReadImages -> SkipByteCopies -> DecodeImages -> EmbedImages
    FindByteCopies + decode/embed errors -> SettleCopiesOfFailures
    fingerprints of both reads -> FindChangedFiles
    errors of every stage -> WriteErrors; shard status -> WriteShards;
    paths found but not read -> WriteSkipped
    shard, error, embedding, copy and skipped rows -> SummarizeRun -> WriteRunTotals
    (incremental night) SplitUnchangedFiles before IndexRecords; the previous run's
    rows of unchanged files join the records, errors and shards; ReuseEmbeddings
    (by sha256, no vectors) replaces SkipByteCopies with OnlyUnseenContent;
    CarryVectors copies the reused rows' vectors from the previous part files
    (docs/nightly.md)

Files are read twice: a cheap index pass (hashing, no bytes kept) finds byte
copies, so the embedding pass decodes and embeds each distinct image once
while streaming with bounded memory. The numbers the run is checked on are
summed in the job too (`_checks.json`), so the launcher reads no per-record
table. `build_pipeline` returns the unrun pipeline; `pipelines.jobs` runs it
inside a run folder.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import Config
from transforms import schemas
from transforms.byte_copies import (
    FindByteCopies,
    SettleCopiesOfFailures,
    SkipByteCopies,
)
from transforms.decode import DecodeImages
from transforms.embed.carried import CarryVectors
from transforms.embed.descriptors import DescriptorHandler
from transforms.embed.images import EmbedImages, SentenceTransformerImageHandler
from transforms.embed.reuse import (
    INCREMENTAL,
    NEW,
    NOT_CARRIED,
    RENAMED,
    TO_EMBED,
    ReuseEmbeddings,
)
from transforms.read.files import FindChangedFiles, ListInputs, ReadRecords
from transforms.read.unchanged import (
    CARRIED_SHARDS,
    READ,
    UNCHANGED,
    RowsOfUnchangedFiles,
    SplitUnchangedFiles,
    copy_record,
    embedded_record,
)
from transforms.run_checks import SummarizeRun, WriteRunTotals
from transforms.write import WriteTable, table_dir

EMBEDDINGS, ERRORS, SHARDS, EXACT_DUPLICATES, SKIPPED = (
    "embeddings", "errors", "shards", "exact_duplicates", "skipped")


def _previous_pattern(previous: str, table: str) -> str:
    return (FileSystems.join(previous, table, "*.parquet") if table == EMBEDDINGS
            else FileSystems.join(previous, table + ".parquet"))


def _previous_table(p: beam.Pipeline, previous: str, table: str, label: str,
                    columns: list[str] | None = None):
    """Rows of a table of the previous run (read-only), on the engine."""
    return p | label >> beam.io.ReadFromParquet(_previous_pattern(previous, table),
                                                columns=columns, validate=False)


def _carry_forward(p: beam.Pipeline, previous: str, files):
    """The incremental part of the graph before the index pass: unchanged files split
    off, and their records, errors and shard rows of the previous run."""
    split = files | "SplitUnchangedFiles" >> SplitUnchangedFiles(
        _previous_table(p, previous, SHARDS, "ReadPreviousShards"))
    unchanged = split[UNCHANGED]
    # Without the vectors: they stay in the previous part files until CarryVectors.
    embedded = _previous_table(p, previous, EMBEDDINGS, "ReadPreviousEmbeddings",
                               [f.name for f in schemas.EMBEDDING_METADATA_FIELDS])
    records = (
        (embedded
         | "EmbeddedOfUnchanged" >> RowsOfUnchangedFiles(unchanged)
         | "AsEmbeddedRecords" >> beam.Map(embedded_record),
         _previous_table(p, previous, EXACT_DUPLICATES, "ReadPreviousExactDuplicates")
         | "CopiesOfUnchanged" >> RowsOfUnchangedFiles(unchanged, "source_uri_b")
         | "AsCopyRecords" >> beam.Map(copy_record))
        | "CarriedRecords" >> beam.Flatten())
    errors = (_previous_table(p, previous, ERRORS, "ReadPreviousErrors")
              | "ErrorsOfUnchanged" >> RowsOfUnchangedFiles(unchanged))
    return split[READ], {"records": records, "errors": errors,
                         "shards": split[CARRIED_SHARDS], "embedded": embedded}


def build_pipeline(config: Config, staging: str, embedding_dim: int,
                   options: PipelineOptions | None = None,
                   image_size: int = 224, descriptor: bool = False,
                   previous: str | None = None) -> beam.Pipeline:
    """The unrun embed pipeline writing its tables below `staging`.

    Args:
        descriptor: `config.model` names a descriptor (`transforms.embed.descriptors`),
            embedded by `DescriptorHandler` instead of a sentence-transformers model.
        previous: a published run folder (same model and preprocessing, checked by
            the launcher) to build on: its unchanged files are not read again and
            content it embedded is not embedded again. Pairs are the mine job's:
            this job writes the ids new to mining and the previous ids whose
            pairs are not carried below `<staging>/_incremental/`.
    """
    p = beam.Pipeline(options=options or PipelineOptions([]))
    inputs = p | "MatchInputs" >> ListInputs(config.inputs)
    files = inputs["files"]
    carried = None
    if previous:
        files, carried = _carry_forward(p, previous, files)

    index = files | "IndexRecords" >> ReadRecords(
        config.image_column, config.key_column, with_data=False, report=True,
        max_file_bytes=config.max_file_bytes)
    records = index.records
    if carried:
        records = (records, carried["records"]) | "AllRecords" >> beam.Flatten()
    exact_pairs = records | "FindByteCopies" >> FindByteCopies()

    # Read image bytes only once the index pass is complete. Otherwise the
    # runner fuses both reads of `files` into one stage and must buffer every
    # image read until the copy set (SkipByteCopies' side input) exists: peak
    # memory grew ~1.6 MiB per image on the local runner (bench/embed.py).
    if carried:
        reused = ({"records": records, "previous": carried["embedded"]}
                  | "ReuseEmbeddings" >> ReuseEmbeddings())
        to_embed = reused[TO_EMBED] | "ToEmbedSet" >> beam.CombineGlobally(
            beam.combiners.ToSetCombineFn())
        index_done = to_embed | "CountToEmbed" >> beam.Map(len)
        select = "OnlyUnseenContent" >> beam.Filter(
            lambda r, ids: r.record_id in ids, beam.pvalue.AsSingleton(to_embed))
    else:
        index_done = exact_pairs | "CountByteCopies" >> beam.combiners.Count.Globally()
        select = "SkipByteCopies" >> SkipByteCopies(exact_pairs)
    data = (files
            | "AfterIndex" >> beam.Map(lambda f, _: f, beam.pvalue.AsSingleton(index_done))
            | "ReadImages" >> ReadRecords(config.image_column, config.key_column,
                                          with_data=True, report=False,
                                          max_file_bytes=config.max_file_bytes))
    # A file rewritten between the two reads: its rows would not match the
    # index (the run checks these rows and refuses to publish).
    changed = data.fingerprints | "FindChangedFiles" >> FindChangedFiles(index.fingerprints)
    decoded = (data.records
               | select
               | "DecodeImages" >> DecodeImages(image_size, config.max_image_pixels,
                                                config.decode_isolation,
                                                config.decode_timeout_s,
                                                ahead=config.decode_ahead,
                                                overlap=config.decode_overlaps,
                                                threads=config.num_threads))
    if descriptor:
        handler = DescriptorHandler(config.model, config.device, config.batch_size)
    else:
        handler = SentenceTransformerImageHandler(config.model, config.device, config.batch_size,
                                                  config.backend, config.num_threads,
                                                  image_size=image_size)
    embeddings, embed_errors = decoded.images | "EmbedImages" >> EmbedImages(
        handler, config.model)

    shards = config.num_output_shards
    schema = schemas.embeddings_schema(embedding_dim, phash=True)
    _ = embeddings | "WriteEmbeddings" >> WriteTable(staging, EMBEDDINGS, schema, shards)
    read_errors, shard_rows = index.errors, index.shards
    if carried:
        _ = ({"not_carried": reused[NOT_CARRIED], "renamed": reused[RENAMED]}
             | "CarryVectors" >> CarryVectors(_previous_pattern(previous, EMBEDDINGS),
                                              table_dir(staging, EMBEDDINGS), schema))
        # the summary counts and checks the reused rows, read without their vectors
        embeddings = (embeddings, reused["embeddings"]) | "AllEmbeddings" >> beam.Flatten()
        read_errors = (read_errors, carried["errors"]) | "ReadAndCarriedErrors" >> beam.Flatten()
        shard_rows = (shard_rows, carried["shards"]) | "AllShards" >> beam.Flatten()
        for tag, label in ((NEW, "WriteNewIds"), (NOT_CARRIED, "WriteNotCarriedIds")):
            _ = (reused[tag]
                 | f"{label}Rows" >> beam.Map(lambda rid: {"record_id": rid})
                 | label >> WriteTable(FileSystems.join(staging, INCREMENTAL), tag,
                                     schemas.RECORD_IDS_SCHEMA, 1))
    failures = (decoded.errors, embed_errors) | "RecordFailures" >> beam.Flatten()
    settled = exact_pairs | "SettleCopiesOfFailures" >> SettleCopiesOfFailures(failures)
    _ = settled.pairs | "WriteExactDuplicates" >> WriteTable(
        staging, EXACT_DUPLICATES, schemas.EXACT_DUPLICATES_SCHEMA, 1)
    errors = (read_errors, failures, settled.errors, changed) | "AllErrors" >> beam.Flatten()
    _ = errors | "WriteErrors" >> WriteTable(staging, ERRORS, schemas.ERRORS_SCHEMA, 1)
    _ = shard_rows | "WriteShards" >> WriteTable(staging, SHARDS, schemas.SHARDS_SCHEMA, 1)
    _ = inputs["skipped"] | "WriteSkipped" >> WriteTable(
        staging, SKIPPED, schemas.SKIPPED_SCHEMA, 1)
    _ = ({"shards": shard_rows, "errors": errors, "embeddings": embeddings,
          "exact_copies": settled.pairs, "skipped": inputs["skipped"]}
         | "SummarizeRun" >> SummarizeRun()
         | "WriteRunTotals" >> WriteRunTotals(staging))
    return p
