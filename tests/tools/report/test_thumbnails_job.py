"""The report's thumbnails job on Dataflow: its graph translates for DataflowRunner."""

from __future__ import annotations

from pipelines.jobs import pipeline_options
from tools.report.thumbnails import build_pipeline


def test_thumbnails_job_translates_for_dataflow():
    options = pipeline_options([
        "--runner=DataflowRunner", "--project=my-project", "--region=europe-west4",
        "--temp_location=gs://my-bucket/tmp", "--dry_run=True", "--no_auth",
        "--sdk_container_image=europe-west4-docker.pkg.dev/my-project/clipdedup/worker:0.1.0",
        "--sdk_location=container", "--experiments=use_runner_v2"])
    records = [{"record_id": "a", "source_uri": "gs://my-bucket/shards/0.tar"},
               {"record_id": "b", "source_uri": "gs://my-bucket/files/b.jpg"}]
    pipeline = build_pipeline(records, "gs://my-bucket/out/_staging-r/_report-x", options)
    assert pipeline.run().state == "DONE"
    steps = {t.unique_name for t in pipeline.runner.proto_pipeline.components.transforms.values()}
    for label in ("SampledRecords", "ReadThumbnails/GroupBySource", "ReadThumbnails/ReadSampled",
                  "WriteThumbnails/WriteParquet"):
        assert any(s == label or s.startswith(label + "/") for s in steps), label
