"""The report's small Beam job: sampled records in, their thumbnails out.

    Create(sampled records) -> ReadThumbnails -> WriteThumbnails

It runs on the runner of the run itself (the same Beam flags), so on Dataflow
the workers read the inputs, not the launcher. The launcher then reads the
one small table back (a few hundred rows of ~10 KB) and deletes it.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.thumbnails import THUMBNAILS_SCHEMA, ReadThumbnails
from transforms.write import WriteTable

TABLE = "thumbnails"


def build_pipeline(records: list[dict], folder: str, options: PipelineOptions | None = None,
                   image_column: str = "image", key_column: str | None = None,
                   max_file_bytes: int = 256 << 20, max_pixels: int | None = None
                   ) -> beam.Pipeline:
    """The unrun job writing the thumbnails of `records` (record_id, source_uri)
    to `<folder>/thumbnails/`."""
    from transforms import records as R

    p = beam.Pipeline(options=options or PipelineOptions([]))
    (p
     | "SampledRecords" >> beam.Create(sorted(records, key=lambda r: (r["source_uri"],
                                                                      r["record_id"])))
     | "ReadThumbnails" >> ReadThumbnails(image_column, key_column, max_file_bytes,
                                          max_pixels or R.DEFAULT_MAX_IMAGE_PIXELS)
     | "WriteThumbnails" >> WriteTable(folder, TABLE, THUMBNAILS_SCHEMA))
    return p


def read_thumbnails(records: list[dict], folder: str, options: PipelineOptions | None = None,
                    **settings) -> dict[str, dict]:
    """Runs the job into `folder` (a scratch folder the caller removes) and
    returns its rows by record_id."""
    from tools.report.sample import batches

    if not records:
        return {}
    result = build_pipeline(records, folder, options, **settings).run()
    result.wait_until_finish()
    rows = {}
    for batch in batches(FileSystems.join(folder, TABLE), THUMBNAILS_SCHEMA.names):
        for row in batch.to_pylist():
            rows[row["record_id"]] = row
    return rows
