"""Stage 1 as a Beam graph: image files -> embeddings, errors, shards, exact copies.

    MatchInputs -> IndexRecords (ids + sha256 only) -> FindByteCopies
                -> ReadImages -> SkipByteCopies -> DecodeImages -> EmbedImages
    FindByteCopies + decode/embed errors -> SettleCopiesOfFailures
    fingerprints of both reads -> FindChangedFiles
    errors of every stage -> WriteErrors; shard status -> WriteShards;
    paths found but not read -> WriteSkipped
    shard, error, embedding, copy and skipped rows -> SummarizeRun -> WriteRunTotals

Files are read twice: a cheap index pass (hashing, no bytes kept) finds byte
copies, so the embedding pass decodes and embeds each distinct image once
while streaming with bounded memory. The numbers the run is checked on are
summed in the job too (`_checks.json`), so the launcher reads no per-record
table. `build_pipeline` returns the unrun pipeline; `pipelines.jobs` runs it
inside a run folder.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import Config
from transforms import schemas
from transforms.byte_copies import (
    FindByteCopies,
    SettleCopiesOfFailures,
    SkipByteCopies,
)
from transforms.decode import DecodeImages
from transforms.embed.descriptors import DescriptorHandler
from transforms.embed.images import EmbedImages, SentenceTransformerImageHandler
from transforms.read.files import FindChangedFiles, ListInputs, ReadRecords
from transforms.run_checks import SummarizeRun, WriteRunTotals
from transforms.write import WriteTable

EMBEDDINGS, ERRORS, SHARDS, EXACT_DUPLICATES, SKIPPED = (
    "embeddings", "errors", "shards", "exact_duplicates", "skipped")


def build_pipeline(config: Config, staging: str, embedding_dim: int,
                   options: PipelineOptions | None = None,
                   image_size: int = 224, descriptor: bool = False) -> beam.Pipeline:
    """The unrun embed pipeline writing its tables below `staging`.

    `descriptor`: `config.model` names a descriptor (`transforms.embed.descriptors`),
    embedded by `DescriptorHandler` instead of a sentence-transformers model.
    """
    p = beam.Pipeline(options=options or PipelineOptions([]))
    inputs = p | "MatchInputs" >> ListInputs(config.inputs)
    files = inputs["files"]

    index = files | "IndexRecords" >> ReadRecords(
        config.image_column, config.key_column, with_data=False, report=True,
        max_file_bytes=config.max_file_bytes)
    exact_pairs = index.records | "FindByteCopies" >> FindByteCopies()

    # Read image bytes only once the index pass is complete. Otherwise the
    # runner fuses both reads of `files` into one stage and must buffer every
    # image read until the copy set (SkipByteCopies' side input) exists: peak
    # memory grew ~1.6 MiB per image on the local runner (bench/embed.py).
    index_done = exact_pairs | "CountByteCopies" >> beam.combiners.Count.Globally()
    data = (files
            | "AfterIndex" >> beam.Map(lambda f, _: f, beam.pvalue.AsSingleton(index_done))
            | "ReadImages" >> ReadRecords(config.image_column, config.key_column,
                                          with_data=True, report=False,
                                          max_file_bytes=config.max_file_bytes))
    records = data.records
    # A file rewritten between the two reads: its rows would not match the
    # index (the run checks these rows and refuses to publish).
    changed = data.fingerprints | "FindChangedFiles" >> FindChangedFiles(index.fingerprints)
    decoded = (records
               | "SkipByteCopies" >> SkipByteCopies(exact_pairs)
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
    _ = embeddings | "WriteEmbeddings" >> WriteTable(
        staging, EMBEDDINGS, schemas.embeddings_schema(embedding_dim, phash=True), shards)
    failures = (decoded.errors, embed_errors) | "RecordFailures" >> beam.Flatten()
    settled = exact_pairs | "SettleCopiesOfFailures" >> SettleCopiesOfFailures(failures)
    _ = settled.pairs | "WriteExactDuplicates" >> WriteTable(
        staging, EXACT_DUPLICATES, schemas.EXACT_DUPLICATES_SCHEMA, 1)
    errors = (index.errors, failures, settled.errors, changed) | "AllErrors" >> beam.Flatten()
    _ = errors | "WriteErrors" >> WriteTable(staging, ERRORS, schemas.ERRORS_SCHEMA, 1)
    _ = index.shards | "WriteShards" >> WriteTable(staging, SHARDS, schemas.SHARDS_SCHEMA, 1)
    _ = inputs["skipped"] | "WriteSkipped" >> WriteTable(
        staging, SKIPPED, schemas.SKIPPED_SCHEMA, 1)
    _ = ({"shards": index.shards, "errors": errors, "embeddings": embeddings,
          "exact_copies": settled.pairs, "skipped": inputs["skipped"]}
         | "SummarizeRun" >> SummarizeRun()
         | "WriteRunTotals" >> WriteRunTotals(staging))
    return p
