"""`pipelines.local_runner`: the default engine runs the FnApiRunner without offering jobs to Prism."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.portability import prism_runner
from apache_beam.testing.util import assert_that, equal_to

from pipelines import jobs, local_runner


@pytest.fixture
def prism_calls(monkeypatch):
    calls = []

    def refuse(self, pipeline, options):
        calls.append(pipeline)
        raise RuntimeError("no Prism in this test")  # the DirectRunner then falls back

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    return calls


def _run(beam_args: list[str], expected=(2, 4, 6)) -> None:
    with beam.Pipeline(options=jobs.pipeline_options(beam_args)) as p:
        doubled = p | beam.Create([1, 2, 3]) | beam.Map(lambda x: 2 * x)
        assert_that(doubled, equal_to(list(expected)))


def test_a_run_names_the_local_runner_unless_told_otherwise():
    assert jobs.pipeline_options([]).view_as(StandardOptions).runner == local_runner.NAME
    assert jobs.pipeline_options(["--runner", "DirectRunner"]).view_as(
        StandardOptions).runner == "DirectRunner"


def test_the_default_runner_never_offers_a_job_to_prism(prism_calls):
    _run([])
    assert prism_calls == []
    _run(["--runner", "DirectRunner"])  # Beam's own runner does: the check can see it
    assert len(prism_calls) == 1


def test_a_failing_step_fails_the_run():
    with pytest.raises(Exception, match="bad element"), \
            beam.Pipeline(options=jobs.pipeline_options([])) as p:
        _ = p | beam.Create([1]) | beam.Map(lambda x: (_ for _ in ()).throw(ValueError("bad element")))


def test_workers_in_other_processes_get_the_options():
    _run(["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"])


def test_the_direct_runner_would_run_every_job_on_the_fnapi_runner(tmp_path, monkeypatch,
                                                                   prism_calls):
    """The DirectRunner picks its bundle-based runner for what the FnApiRunner cannot
    run; asked with Beam's own logic, it picks the FnApiRunner for every job, so
    LocalRunner runs them where the DirectRunner would."""
    from apache_beam.runners.direct.direct_runner import (
        BundleBasedDirectRunner,
        SwitchingDirectRunner,
    )
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from pipelines import diff_pipeline, embed_pipeline, mine_pipeline
    from pipelines.config import Config

    picked = []
    monkeypatch.setattr(fn_runner.FnApiRunner, "run_pipeline",
                        lambda self, pipeline, options: picked.append("fnapi"))
    monkeypatch.setattr(BundleBasedDirectRunner, "run_pipeline",
                        lambda self, pipeline, options: picked.append("bundle-based"))
    config = Config(inputs=[str(tmp_path)])
    graphs = [embed_pipeline.build_pipeline(config, str(tmp_path / "s"), 512),
              mine_pipeline.build_pipeline(config, str(tmp_path / "e"), str(tmp_path / "s"),
                                           n_records=1),
              mine_pipeline.build_pipeline(config, str(tmp_path / "e"), str(tmp_path / "s"),
                                           n_records=10**8),
              diff_pipeline.build_pipeline(str(tmp_path / "a"), str(tmp_path / "b"),
                                           str(tmp_path / "d"))]
    for graph in graphs:
        SwitchingDirectRunner().run_pipeline(graph, graph._options)
    assert picked == ["fnapi"] * len(graphs)

    from apache_beam.testing.test_stream import TestStream

    streaming = beam.Pipeline(options=jobs.pipeline_options(["--streaming"]))
    _ = streaming | TestStream().add_elements([1]) | beam.Map(lambda x: x)
    SwitchingDirectRunner().run_pipeline(streaming, streaming._options)
    assert picked[-1] == "bundle-based"  # the check can tell the engines apart
