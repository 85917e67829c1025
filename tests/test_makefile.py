"""`make run-dataflow` is one command that launches the job on Dataflow.

`make -n` prints the command without running it (nor the install step); the
test parses it with the real CLI parser and Beam's options, then translates
the embed graph it would launch with DataflowRunner's dry run, so a typo in a
flag or a value that does not reach the pipeline fails here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from pipelines import embed_pipeline
from pipelines.cli import build_parser, config_from_args
from pipelines.jobs import pipeline_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _command(*variables: str) -> list[str]:
    out = subprocess.run(["make", "-n", "run-dataflow", *variables], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.replace("\\\n", " ")
    (line,) = [line for line in out.splitlines() if "clipdedup run" in line]
    argv = shlex.split(line)
    assert argv[0].endswith("clipdedup")
    return argv[1:]


def test_run_dataflow_passes_every_setting_through():
    args, beam_args = build_parser().parse_known_args(
        _command("PROJECT=my-project", "REGION=europe-west4", "BUCKET=my-bucket"))
    config = config_from_args(args)
    assert config.inputs == ("gs://my-bucket/shards/*.tar",)
    assert (config.output, config.model, config.device) == (
        "gs://my-bucket/clipdedup", "clip-ViT-B-32", "cpu")
    options = pipeline_options(beam_args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == (
        "my-project", "europe-west4", "gs://my-bucket/tmp")
    assert options.view_as(SetupOptions).setup_file == "./setup.py"


def test_run_dataflow_on_gpu_workers_translates_for_dataflow():
    image = "europe-west4-docker.pkg.dev/my-project/clipdedup/worker-gpu:0.1.0"
    args, beam_args = build_parser().parse_known_args(_command(
        "PROJECT=my-project", "REGION=europe-west4", "BUCKET=my-bucket", f"IMAGE={image}",
        "GPU=1", "MODEL=gs://my-bucket/models/clip-ViT-B-32"))
    config = config_from_args(args)
    assert config.device == "cuda" and config.model == "gs://my-bucket/models/clip-ViT-B-32"
    options = pipeline_options(beam_args + ["--dry_run=True", "--no_auth"])
    assert options.view_as(WorkerOptions).sdk_container_image == image
    assert options.view_as(SetupOptions).setup_file is None  # the image has the code
    pipeline = embed_pipeline.build_pipeline(config, "gs://my-bucket/clipdedup/_staging-x",
                                             512, options)
    assert pipeline.run().state == "DONE"
    services = options.get_all_options()["dataflow_service_options"]
    assert services == ["worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
    environments = pipeline.runner.proto_pipeline.components.environments.values()
    assert any(image.encode() in env.payload for env in environments)
