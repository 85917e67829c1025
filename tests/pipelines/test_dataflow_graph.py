"""Both pipelines translated for Dataflow without a cloud account.

`--dry_run=True` makes `DataflowRunner` do everything up to the API call:
apply its overrides, translate the graph to the portable proto, pickle every
DoFn, stage dependencies (`--setup_file` builds the sdist) and build the Job
request. `--no_auth` skips credentials. The proto is then loaded back with
`Pipeline.from_runner_api`, which unpickles every step as a worker would, so
a step that cannot be pickled or restored fails here instead of on Dataflow.
"""

from __future__ import annotations

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import embed_pipeline, mine_pipeline
from pipelines.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "gs://clipdedup-test-bucket"
DRY_RUN = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth",
           "--project=clipdedup-test-project", "--region=us-central1",
           f"--temp_location={BUCKET}/tmp", "--job_name=clipdedup-dry-run"]
GPU_WORKERS = ["--sdk_container_image=us-docker.pkg.dev/p/clipdedup/worker-gpu:0.1.0",
               "--experiments=use_runner_v2", "--number_of_worker_harness_threads=1",
               ("--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;"
                "install-nvidia-driver"), "--machine_type=n1-standard-8"]
STAGING = f"{BUCKET}/out/_staging-dry"


def _config():
    return load_config("dataflow").replace(inputs=[f"{BUCKET}/shards/*.tar"],
                                           model=f"{BUCKET}/models/clip-ViT-B-32",
                                           output=f"{BUCKET}/out")


def _dry_run(pipeline: beam.Pipeline):
    """Runs the dry run; returns the translated proto and the job request."""
    result = pipeline.run()
    assert result.state == "DONE"
    proto = pipeline.runner.proto_pipeline
    options = PipelineOptions([])
    beam.Pipeline.from_runner_api(proto, beam.runners.DirectRunner(), options)  # unpickles all
    return proto, result.job


def _labels(proto) -> set[str]:
    return {t.unique_name for t in proto.components.transforms.values()}


def test_embed_pipeline_translates_for_dataflow_with_setup_file():
    options = PipelineOptions(DRY_RUN + [f"--setup_file={ROOT}/setup.py",
                                         "--sdk_location=container"])
    proto, job = _dry_run(embed_pipeline.build_pipeline(_config(), STAGING, 512, options))
    assert {"MatchInputs", "IndexRecords", "FindByteCopies", "ReadImages", "SkipByteCopies",
            "DecodeImages", "EmbedImages", "EmbedImages/RunInference", "WriteEmbeddings",
            "WriteExactDuplicates", "WriteErrors", "WriteShards", "SummarizeRun",
            "SummarizeRun/RunTotals", "WriteRunTotals"} <= _labels(proto)
    (env,) = {e.SerializeToString(): e
              for e in proto.components.environments.values()}.values()
    staged = {d.role_payload for d in env.dependencies}
    assert any(b"workflow.tar.gz" in payload for payload in staged), staged  # the sdist
    assert job.proto.environment.experiments is not None


@pytest.mark.parametrize("mode, steps", [
    ("auto", {"EmbeddingsTable", "MinePairs"}),
    ("distributed", {"ReadEmbeddings", "MineDistributed", "SplitPairs", "MeasureRecall"})])
def test_mine_pipeline_translates_for_dataflow_on_gpu_workers(mode, steps, tmp_path):
    embeddings = f"{STAGING}/embeddings/*.parquet"
    if mode == "distributed":
        # ReadFromParquet lists its pattern while the graph is built, which for
        # gs:// needs credentials; a local table of the same schema stands in.
        import pyarrow.parquet as pq

        from transforms.schemas import embeddings_schema
        embeddings = str(tmp_path / "embeddings-00000.parquet")
        pq.write_table(embeddings_schema(512).empty_table(), embeddings)
    options = PipelineOptions(DRY_RUN + GPU_WORKERS)
    pipeline = mine_pipeline.build_pipeline(_config().replace(mode=mode), embeddings, STAGING,
                                            options)
    proto, job = _dry_run(pipeline)
    assert steps | {"WriteDuplicates", "WriteNearDuplicates", "WriteStats"} <= _labels(proto)
    images = {e.payload for e in proto.components.environments.values()}
    assert any(b"worker-gpu:0.1.0" in payload for payload in images), images
    assert "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver" in \
        job.options.get_all_options()["dataflow_service_options"]


def _refuse_to_load():
    raise RuntimeError("this step cannot be restored on a worker")


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("this step cannot be pickled")


class _Unloadable:
    def __reduce__(self):
        return _refuse_to_load, ()


@pytest.mark.parametrize("state, message", [(_Unpicklable(), "cannot be pickled"),
                                            (_Unloadable(), "cannot be restored")])
def test_a_step_that_cannot_be_shipped_fails_the_check(state, message):
    """The check has teeth: a step that fails to pickle or to unpickle fails it."""
    pipeline = beam.Pipeline(options=PipelineOptions(DRY_RUN + ["--sdk_location=container"]))
    with pytest.raises(Exception, match=message):
        _ = (pipeline | "Create" >> beam.Create([1])
             | "Bad" >> beam.Map(lambda x, s: x, state))
        _dry_run(pipeline)
