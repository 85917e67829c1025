"""`pipelines.beam_option_views`: option views parsed once, behaving as Beam's own."""

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)

from pipelines import beam_option_views


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(PipelineOptions, "view_as", beam_option_views.view_as)
    monkeypatch.setattr(beam_option_views, "_parsed", {})  # each test parses afresh


FLAGS = ["--runner", "DirectRunner", "--direct_num_workers", "2", "--experiments", "a"]


def test_views_read_what_beams_own_views_read(installed):
    options = PipelineOptions(FLAGS)
    reference = PipelineOptions(FLAGS)
    for cls in (StandardOptions, DirectOptions, DebugOptions, TypeOptions):
        for _ in range(2):  # the second view comes from the kept parse
            view = options.view_as(cls)
            expected = beam_option_views._original(reference, cls)
            assert type(view) is cls
            assert view.get_all_options() == expected.get_all_options()


def test_views_share_their_sources_values(installed):
    options = PipelineOptions(FLAGS)
    options.view_as(StandardOptions).runner = "Other"
    assert options.view_as(StandardOptions).runner == "Other"
    options.view_as(DebugOptions).add_experiment("b")
    assert options.view_as(DebugOptions).experiments == ["a", "b"]


def test_a_change_in_one_options_object_does_not_reach_another(installed):
    first, second = PipelineOptions(FLAGS), PipelineOptions(FLAGS)
    first.view_as(DebugOptions).add_experiment("only_first")
    first.view_as(StandardOptions).runner = "Other"
    assert second.view_as(DebugOptions).experiments == ["a"]
    assert second.view_as(StandardOptions).runner == "DirectRunner"
    third = PipelineOptions(FLAGS)
    assert third.view_as(DebugOptions).experiments == ["a"]


def test_other_flags_are_parsed_for_themselves(installed):
    PipelineOptions(FLAGS).view_as(DirectOptions)
    assert PipelineOptions(["--direct_num_workers", "5"]).view_as(
        DirectOptions).direct_num_workers == 5
