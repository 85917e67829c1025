"""Flags: Beam's real flags pass through, anything neither parser knows is an error."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    GoogleCloudOptions,
    StandardOptions,
    WorkerOptions,
)

from pipelines import cli
from pipelines.beam_flags import UnknownFlagError
from pipelines.jobs import pipeline_options
from tests.test_makefile import ROOT

RUN = ["run", "--input", "data/a.tar", "--output", "out"]


@pytest.mark.parametrize("extra, message", [
    (["--duplicate-treshold", "0.95"],
     "unknown flag --duplicate-treshold (did you mean --duplicate-threshold?)"),
    (["--duplicate-treshold=0.95"], "unknown flag --duplicate-treshold (did you mean"),
    (["--near-duplicate-treshold", "0.8"], "did you mean --near-duplicate-threshold?"),
    (["--direct_num_worker=2"], "unknown flag --direct_num_worker (did you mean "
                                "--direct_num_workers?)"),
    (["--runnr", "DirectRunner"], "unknown flag --runnr (did you mean --runner?)"),
    (["-x"], "unknown flag -x"),
    (["--direct_num_workers=two"], "argument --direct_num_workers: invalid int value: 'two'"),
    (["--direct_running_mode", "fast"], "argument --direct_running_mode: invalid choice"),
])
def test_a_flag_neither_parser_knows_is_an_error_naming_it(extra, message):
    with pytest.raises(UnknownFlagError) as err:
        cli.parse(RUN + extra)
    assert message in str(err.value)


def test_a_stray_argument_is_an_error():
    with pytest.raises(UnknownFlagError, match="unexpected argument 'leftover'"):
        cli.parse(["mine", "--embeddings", "e/", "--run-id", "r", "leftover"])


def test_commands_that_run_no_pipeline_take_no_beam_flags():
    with pytest.raises(UnknownFlagError, match=r"unknown flag --sizee \(did you mean --size\?\)"):
        cli.parse(["make-stand-in", "--output", "m", "--sizee", "tiny"])
    with pytest.raises(UnknownFlagError, match="unknown flag --runner"):
        cli.parse(["make-stand-in", "--output", "m", "--runner", "DirectRunner"])


@pytest.mark.parametrize("style", ["equals", "space"])
def test_real_beam_and_dataflow_flags_pass_through_in_both_styles(style):
    flags = {"--runner": "DataflowRunner", "--direct_num_workers": "2",
             "--direct_running_mode": "multi_processing", "--project": "my-project",
             "--region": "europe-west4", "--experiments": "use_runner_v2",
             "--sdk_container_image": "eu.gcr.io/p/worker:1",
             "--dataflow_service_options": "worker_accelerator=type:nvidia-tesla-t4;count:1"}
    argv = [part for k, v in flags.items()
            for part in ([f"{k}={v}"] if style == "equals" else [k, v])]
    args, beam_args = cli.parse(RUN + argv + ["--no_auth", "--dry_run=True"])
    assert args.inputs == ["data/a.tar"] and beam_args[:len(argv)] == argv
    options = pipeline_options(beam_args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert options.view_as(GoogleCloudOptions).project == "my-project"
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    assert options.view_as(WorkerOptions).sdk_container_image == "eu.gcr.io/p/worker:1"
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [
        "worker_accelerator=type:nvidia-tesla-t4;count:1"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_dataflow_passes_the_check():
    out = subprocess.run(
        ["make", "-n", "run-dataflow", "PROJECT=p", "REGION=r", "BUCKET=b", "GPU=1",
         "IMAGE=eu.gcr.io/p/worker-gpu:1", "DATAFLOW_FLAGS=--max_num_workers 4 --job_name=j"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout.replace("\\\n", " ")
    (line,) = [line for line in out.splitlines() if "clipdedup run" in line]
    args, beam_args = cli.parse(shlex.split(line)[1:])
    assert args.device == "cuda" and "--max_num_workers" in beam_args
    assert pipeline_options(beam_args).view_as(WorkerOptions).max_num_workers == 4


def test_input_takes_the_files_of_a_shell_expanded_glob_and_repeats():
    args, beam_args = cli.parse(["embed", "--input", "d/a.tar", "d/b.tar", "d/c.tar",
                                 "--output", "out", "--input", "more/", "--runner",
                                 "DirectRunner"])
    assert cli.config_from_args(args).inputs == ("d/a.tar", "d/b.tar", "d/c.tar", "more/")
    assert beam_args == ["--runner", "DirectRunner"]


def test_the_parsers_own_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse(["run", "--batch-size", "many"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("clipdedup: error: argument --batch-size: invalid int value")


def test_shell_expanded_glob_reads_every_file(tmp_path, tiny_model):
    """`--input dir/*.tar` unquoted: the shell passes three names, all three are read."""
    import json

    from tests.conftest import encode, random_image, write_tar

    names = []
    for shard in range(3):
        names.append(write_tar(str(tmp_path / f"{shard}.tar"), [
            (f"{shard}-{i}.jpg", encode(random_image(10 * shard + i))) for i in range(2)]))
    assert cli.run(["-q", "embed", "--input", *names, "--output", str(tmp_path / "out"),
                    "--run-id", "glob", "--model", tiny_model, "--batch-size", "4"]) == 0
    summary = json.loads((tmp_path / "out" / "glob" / "summary.json").read_text())
    assert summary["counts"]["files"] == 3 and summary["counts"]["records_read"] == 6
    assert summary["config"]["inputs"] == names


def test_quiet_goes_before_or_after_the_command():
    """`-q` before the command used to reach Beam, which dropped it: quiet was ignored."""
    args, beam_args = cli.parse(["-q", "mine", "--embeddings", "e/", "--output", "o"])
    assert args.quiet_all and beam_args == []
    args, _ = cli.parse(["mine", "-q", "--embeddings", "e/", "--output", "o"])
    assert args.quiet
